"""Stage 3 on TREC-6 question classification (6 coarse classes).

    python -m train.ulmfit --config train/configs/classify_trec.py --workdir runs/trec \
        --config.init.workdir=runs/lm_trec
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("classify")
    c.data.source, c.data.format = "local", "trec"
    c.data.path = "../shared/data/trec"
    c.model.drop_mult = 0.5
    lr = 1e-2
    c.phases = ((1, 1, lr), (2, 1, lr / 2), (3, 1, lr / 4), (0, 2, lr / 20))
    if variant == "tiny":
        tiny(c)
        c.phases = ((1, 1, lr), (0, 1, lr / 20))
    return c
