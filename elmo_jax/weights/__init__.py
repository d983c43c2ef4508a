"""AllenNLP / bilm-tf weights: `options.json` + `.hdf5`, read and written."""
