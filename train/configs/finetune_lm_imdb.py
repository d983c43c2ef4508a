"""Stage 2: LM fine-tuning on IMDb (train, test and the 50k unlabelled reviews).

fastai's recipe: one epoch with only the top group (embedding + decoder) trainable, then all
groups, with discriminative learning rates and STLR.

    python -m train.ulmfit --config train/configs/finetune_lm_imdb.py --workdir runs/lm \
        --config.init.workdir=runs/pretrain
"""

from train.configs.base import base_config, check_variant
from ulmfit_jax.stages.defaults import lm_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("finetune_lm")
    c.data.source = "imdb"
    c.data.lm_splits = ("train", "test", "unsupervised")
    return lm_recipe(c, small=variant == "tiny")
