"""Stage 2: LM fine-tuning on IMDb (train, test and the 50k unlabelled reviews).

fastai's recipe: one epoch with only the top group (embedding + decoder) trainable, then all
groups, with discriminative learning rates and STLR.

    python -m train.ulmfit --config train/configs/finetune_lm_imdb.py --workdir runs/lm \
        --config.init.workdir=runs/pretrain
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("finetune_lm")
    c.data.source = "imdb"
    c.data.lm_splits = ("train", "test", "unsupervised")
    c.model.drop_mult = 0.3
    c.phases = ((1, 1, 2e-2), (0, 10, 2e-3))
    if variant == "tiny":
        tiny(c)
        c.phases = ((1, 1, 2e-2), (0, 1, 2e-3))
    return c
