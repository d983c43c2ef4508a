"""A sentence classifier on frozen ELMo features, on your own CSV/TSV/JSONL files.

    # train.csv (+ valid.csv, test.csv) in DIR, columns `sentence` and `label`:
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.bilm.dir=runs/elmo/export --config.data.path=DIR \
        --config.data.text_fields="('sentence',)" --config.data.label_field=label
    # texts in, labels and probabilities out:
    python -m train.elmo_downstream --config train/configs/elmo_classify_local.py \
        --workdir runs/clf --config.mode=predict --config.predict.input=new.csv \
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


def get_config(variant: str = "") -> ConfigDict:
    check_variant(variant, VARIANTS)
    c = ConfigDict()
    c.seed = 0
    c.mode = "train"  # or "predict"
    c.export_dir = ""  # "" is WORKDIR/export
    c.overwrite = False  # True: replace an export_dir this program did not write

    c.bilm = ConfigDict()
    c.bilm.dir = ""  # an export folder (options.json + lm_weights.hdf5), or:
    c.bilm.options = ""
    c.bilm.weights = ""

    c.data = ConfigDict()
    c.data.source = "local"
    c.data.path = ""
    c.data.format = "csv"  # csv, tsv, jsonl, or a labelled local format (trec, sst, sst2, ...)
    c.data.tfds_dir = ""  # where local formats are prepared; "" is TFDS's default
    c.data.splits = ""  # e.g. "train=a.csv,test=b.csv"; "" is train/valid/test.<format>
    c.data.text_fields = ("text",)
    c.data.label_field = "label"
    c.data.tokenizer = "spacy"  # or "whitespace"
    c.data.train_split = "train"
    c.data.valid_split = ""  # "" is a seeded valid_pct of train (unless valid_col is set)
    c.data.valid_pct = 0.1
    c.data.valid_col = ""
    c.data.test_split = "test"
    c.data.errors = "replace"
    c.data.train_limit = 0
    c.data.valid_limit = 0
    c.data.test_limit = 0

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
