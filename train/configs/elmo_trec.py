"""A TREC-6 question classifier on frozen ELMo features (AllenNLP's recipe).

    # ELMo (all biLM layers mixed) and the character-CNN layer alone, same classifier:
    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_elmo --config.bilm.dir=runs/elmo_sample/export
    python -m train.elmo_downstream --config train/configs/elmo_trec.py \
        --workdir runs/trec_cnn --config.bilm.dir=runs/elmo_sample/export \
        --config.classifier.layers="(0,)"

The biLM stays frozen; the scalar mix (weights and gamma), a 64-unit BiLSTM and the output layer
train with Adam for 10 epochs on train_5500 (5,452 questions) less a seeded 10% held out for
validation (the best epoch is kept); accuracy on TREC_10 (500), once, at the end. TREC's
questions are tokenized already: whitespace tokens.
"""

from ml_collections import ConfigDict

from train.configs import elmo_classify_local


def get_config(variant: str = "") -> ConfigDict:
    c = elmo_classify_local.get_config(variant)
    c.data.path = "../shared/data/trec"
    c.data.format = "trec"  # TREC .label files through the local TFDS source
    c.data.text_fields = ("text",)
    c.data.label_field = ""
    c.data.tokenizer = "whitespace"
    return c
