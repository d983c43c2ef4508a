"""Stage 3: the IMDb sentiment classifier with gradual unfreezing (fastai's ULMFiT recipe).

    python -m train.ulmfit --config train/configs/classify_imdb.py --workdir runs/clas \
        --config.init.workdir=runs/lm

With `--config.init.workdir=''` the same classifier is trained from scratch (the baseline).
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("classify")
    c.data.source = "imdb"
    c.model.drop_mult = 0.5
    lr = 2e-2
    # freeze_to(-1), freeze_to(-2), freeze_to(-3), unfreeze(): fastai's IMDb schedule.
    c.phases = ((1, 1, lr), (2, 1, lr / 2), (3, 1, lr / 4), (0, 2, lr / 20))
    if variant == "tiny":
        tiny(c)
        c.phases = ((1, 1, lr), (0, 1, lr / 20))
    return c
