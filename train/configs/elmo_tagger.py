"""A named-entity tagger on ELMo: Peters et al.'s BiLSTM-CRF (AllenNLP's NER setup).

    # CoNLL-2003's column files (eng.train / eng.testa / eng.testb, IOB1 tags):
    python -m train.elmo_tagger --config train/configs/elmo_tagger.py --workdir runs/ner \
        --config.bilm.dir=runs/elmo_sample/export --config.data.path=/data/conll2003
    # TFDS's conll2003, when `tfds build conll2003` has prepared it (never downloaded here):
    python -m train.elmo_tagger --config train/configs/elmo_tagger.py --workdir runs/ner \
        --config.bilm.dir=... --config.data.format=tfds --config.data.train=train \
        --config.data.valid=dev --config.data.test=test --config.data.scheme=BIO
    # The committed synthetic task (tests/fixtures/tagging; run from the repository root),
    # a tiny model, about 30 s on 2 CPU cores:
    python -m train.elmo_tagger --config train/configs/elmo_tagger.py:tiny --workdir runs/tag \
        --config.bilm.options=options.json --config.bilm.weights=lm_weights.hdf5

The biLM stays frozen; the scalar mix, a 2-layer 200-unit BiLSTM, the output layer and the CRF
train with Adam (gradient norm clipped at 5), BIOUL tags with constrained Viterbi decoding, up
to 40 epochs with patience 10 on validation span F1 (AllenNLP's ner_elmo: 75 and 25, with GloVe
and a character CNN beside ELMo, which this model leaves out). No NER data is on this machine.
"""

from ml_collections import ConfigDict

from train.configs.base import VARIANTS, check_variant


def get_config(variant: str = "") -> ConfigDict:
    check_variant(variant, VARIANTS)
    c = ConfigDict()
    c.seed = 0
    c.stage = "train"  # or "predict": tag predict.input with the export
    c.overwrite = False  # True: replace a WORKDIR/export this program did not write

    c.bilm = ConfigDict()
    c.bilm.dir = ""  # an export folder (options.json + lm_weights.hdf5), or:
    c.bilm.options = ""
    c.bilm.weights = ""

    c.data = ConfigDict()
    c.data.format = "conll"  # column files; "tfds": TFDS's prepared conll2003
    c.data.path = "../shared/data/conll2003"
    c.data.train = "eng.train"  # files under data.path, or TFDS splits (train, dev, test)
    c.data.valid = "eng.testa"
    c.data.test = "eng.testb"
    c.data.token_col = 0
    c.data.tag_col = -1
    c.data.scheme = "IOB1"  # the files' scheme, read as BIO (TFDS's conll2003 is BIO)
    c.data.tfds_dir = ""

    c.model = ConfigDict()
    c.model.scheme = "BIOUL"  # the tags the CRF predicts: BIO or BIOUL
    c.model.hidden = 200
    c.model.encoder_layers = 2
    c.model.elmo_dropout = 0.5
    c.model.dropout = 0.5
    c.model.constrain_decoding = True
    c.model.constrain_loss = False
    c.model.do_layer_norm = False

    c.train = ConfigDict()
    c.train.batch_size = 32
    c.train.epochs = 40
    c.train.learning_rate = 1e-3
    c.train.grad_norm = 5.0
    c.train.monitor = "f1"  # validation span F1
    c.train.patience = 10
    c.train.eval_batch_size = 64
    c.train.checkpoint_every = 500
    c.train.log_every = 50

    c.export = ConfigDict()
    c.export.copy_bilm = False  # True: copy options.json + lm_weights.hdf5 into the export

    c.predict = ConfigDict()
    c.predict.input = ""  # one whitespace-tokenized sentence per line
    c.predict.output = ""  # default WORKDIR/predictions.txt
    c.predict.export = ""  # default WORKDIR (its export/)

    if variant == "tiny":
        c.data.path = "tests/fixtures/tagging"
        c.data.train, c.data.valid, c.data.test = "train.txt", "valid.txt", "test.txt"
        c.data.scheme = "BIO"
        c.model.scheme = "BIO"
        c.model.hidden = 16
        c.model.encoder_layers = 1
        c.model.elmo_dropout = 0.1
        c.model.dropout = 0.2
        c.train.batch_size = 16
        c.train.epochs = 20
        c.train.learning_rate = 3e-2
        c.train.patience = 0
        c.train.eval_batch_size = 50
        c.train.checkpoint_every = 100
        c.train.log_every = 25
        c.export.copy_bilm = True
    return c
