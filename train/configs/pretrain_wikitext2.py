"""Stage 1: general-domain LM pretraining on WikiText-2 (WikiText-103 where a user has it).

    python -m train.ulmfit --config train/configs/pretrain_wikitext2.py --workdir runs/pretrain \
        --config.data.path=../shared/data/wikitext-2
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("pretrain")
    c.data.source, c.data.format = "local", "wikitext"
    c.data.path = "../shared/data/wikitext-2"
    c.data.lm_splits, c.data.valid_split = ("train",), "validation"
    c.model.drop_mult = 0.5
    c.optim.schedule = "one_cycle"
    c.phases = ((0, 10, 5e-3),)
    if variant == "tiny":
        tiny(c)
        c.phases = ((0, 1, 5e-3),)
    return c
