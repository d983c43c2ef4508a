"""Language-model fine-tuning on your own text: CSV, TSV or JSONL files, or plain text lines.

    python -m train.ulmfit --config train/configs/finetune_lm_local.py --workdir runs/lm \
        --config.data.path=DIR --config.data.format=csv --config.data.text_fields="('review',)" \
        --config.init.pretrained=wt103_fwd        # or --config.init.workdir=runs/pretrain

Every document of `data.lm_splits` (default: train) is LM text, labelled or not; a seeded
`data.valid_pct` of them is held out for validation (or `data.valid_split`).
"""

from train.configs.base import base_config, check_variant
from ulmfit_jax.stages.defaults import lm_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("finetune_lm")
    c.data.source, c.data.format = "local", "csv"
    return lm_recipe(c, small=variant == "tiny")
