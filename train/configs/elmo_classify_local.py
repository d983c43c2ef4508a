"""A sentence classifier on frozen ELMo features, on your own CSV/TSV/JSONL files.

    # train.csv (+ valid.csv, test.csv) in DIR, columns `sentence` and `label`:
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.bilm.dir=runs/elmo/export --config.data.path=DIR \
        --config.data.text_fields="('sentence',)" --config.data.label_field=label
    # texts in, labels and probabilities out:
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.stage=predict --config.predict.input=new.csv \
        --config.predict.output=predictions.csv

Validation: `data.valid_col` (a true/false column), else `data.valid_split` (e.g. "valid" for
`valid.csv`), else a seeded `data.valid_pct` of train; the best epoch by valid `train.monitor`
is exported to `WORKDIR/export` (or `export_dir`); `test.csv`, when present, is evaluated once
at the end. `data.format` may also be any labelled local format: "trec", "sst", "sst2"
(`train/configs/elmo_trec.py`, `scripts/experiments/elmo_sst5.py`). `data.tokenizer`: "spacy"
(AllenNLP's default; raw text) or "whitespace" (pre-tokenized text).
"""

from ml_collections import ConfigDict

from train.configs.base import VARIANTS, check_variant
from ulmfit_jax.core.data.spec import data_config


def get_config(variant: str = "") -> ConfigDict:
    check_variant(variant, VARIANTS)
    c = ConfigDict()
    c.seed = 0
    c.stage = "train"  # or "predict": label predict.input with the export
    c.export_dir = ""  # "" is WORKDIR/export
    c.overwrite = False  # True: replace an export_dir this program did not write

    c.bilm = ConfigDict()
    c.bilm.dir = ""  # an export folder (options.json + lm_weights.hdf5), or:
    c.bilm.options = ""
    c.bilm.weights = ""

    # `DataSpec`'s keys and defaults (its docstring documents them), a local table by default;
    # format may also be any labelled local format (trec, sst, sst2, ...).
    c.data = data_config(source="local", format="csv", label_field="label")
    c.data.tokenizer = "spacy"  # or "whitespace"

    c.classifier = ConfigDict()
    c.classifier.layers = (0, 1, 2)  # (0,): the context-independent char-CNN layer only
    c.classifier.hidden = 64  # BiLSTM size per direction; 0: pooling only
    c.classifier.elmo_dropout = 0.5
    c.classifier.dropout = 0.2
    c.classifier.do_layer_norm = False

    c.train = ConfigDict()
    c.train.batch_size = 32
    c.train.epochs = 10
    c.train.learning_rate = 1e-3
    c.train.monitor = "accuracy"  # or "loss"
    c.train.patience = 0  # stop after this many epochs without improvement; 0: never
    c.train.checkpoint_every = 500
    c.train.log_every = 50

    c.predict = ConfigDict()
    c.predict.export = ""  # "" is export_dir, else WORKDIR/export
    c.predict.input = ""  # a CSV/TSV/JSONL table or a .txt file (one text per line)
    c.predict.output = ""  # "" is WORKDIR/predictions.csv
    c.predict.text_fields = ()  # () is the training text fields

    if variant == "tiny":
        c.classifier.hidden = 8
        c.train.batch_size = 4
        c.train.epochs = 2
        c.train.checkpoint_every = 5
        c.train.log_every = 5
    return c
