"""A TREC-6 question classifier on frozen ELMo features (AllenNLP's recipe).

    # ELMo (all biLM layers mixed) and the character-CNN layer alone, same classifier:
    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_elmo --config.bilm.dir=runs/elmo_sample/export
    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_cnn --config.bilm.dir=runs/elmo_sample/export \
        --config.classifier.layers="(0,)"

The biLM stays frozen; the scalar mix (weights and gamma), a 64-unit BiLSTM and the output layer
train with Adam for 10 epochs on train_5500 (5,452 questions); accuracy on TREC_10 (500).
"""

from ml_collections import ConfigDict

from train.configs.base import VARIANTS, check_variant


def get_config(variant: str = "") -> ConfigDict:
    check_variant(variant, VARIANTS)
    c = ConfigDict()
    c.seed = 0

    c.bilm = ConfigDict()
    c.bilm.dir = ""  # an export folder (options.json + lm_weights.hdf5), or:
    c.bilm.options = ""
    c.bilm.weights = ""

    c.data = ConfigDict()
    c.data.path = "../shared/data/trec"
    c.data.format = "trec"  # any labelled ulmfit_jax.core.data.local_datasets format
    c.data.tfds_dir = ""  # where the local dataset is prepared; "" is TFDS's default
    c.data.train_split = "train"
    c.data.test_split = "test"

    c.classifier = ConfigDict()
    c.classifier.layers = (0, 1, 2)  # (0,): the context-independent char-CNN layer only
    c.classifier.hidden = 64
    c.classifier.elmo_dropout = 0.5
    c.classifier.dropout = 0.2
    c.classifier.do_layer_norm = False

    c.train = ConfigDict()
    c.train.batch_size = 32
    c.train.epochs = 10.0
    c.train.learning_rate = 1e-3
    c.train.checkpoint_every = 500
    c.train.log_every = 50

    if variant == "tiny":
        c.classifier.hidden = 8
        c.train.batch_size = 4
        c.train.epochs = 2.0
        c.train.checkpoint_every = 5
        c.train.log_every = 5
    return c
