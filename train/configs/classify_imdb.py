"""Stage 3: the IMDb sentiment classifier with gradual unfreezing (fastai's ULMFiT recipe).

    python -m train.ulmfit --config train/configs/classify_imdb.py --workdir runs/clas \
        --config.init.workdir=runs/lm

With `--config.init.workdir=''` the same classifier is trained from scratch (the baseline).
"""

from train.configs.base import base_config, check_variant
from ulmfit_jax.stages.defaults import classifier_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("classify")
    c.data.source = "imdb"
    return classifier_recipe(c, small=variant == "tiny")
