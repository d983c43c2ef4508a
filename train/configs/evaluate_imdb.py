"""Evaluate one classifier, or the forward+backward ensemble, on the IMDb test set.

    python -m train.ulmfit --config train/configs/evaluate_imdb.py \
        --config.eval.workdirs="('runs/clas','runs/clas_bwd')"
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("evaluate")
    c.data.source = "imdb"
    if variant == "tiny":
        tiny(c)
    return c
