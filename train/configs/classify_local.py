"""A classifier on your own files: CSV, TSV or JSONL with named text and label columns.

    python -m train.ulmfit --config train/configs/classify_local.py --workdir runs/clas \
        --config.data.path=DIR --config.data.format=csv \
        --config.data.text_fields="('review',)" --config.data.label_field=label \
        --config.data.valid_pct=0.1 --config.init.workdir=runs/lm

`DIR` holds `train.csv` (and `test.csv`, read only by the evaluate stage); `data.path` may also
be one file. The validation set is `data.valid_col` (a column of true/false), else the split
`data.valid_split` (e.g. a `valid.csv`), else a seeded `data.valid_pct` of train. Labels:
`data.label_delim=';'` for multi-label, `data.label_kind=regression` (with `model.y_range`) for
numbers. `--config.init.workdir=''` trains the same classifier from scratch.
"""

from train.configs.base import base_config, check_variant
from ulmfit_jax.stages.defaults import classifier_recipe


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("classify")
    c.data.source, c.data.format = "local", "csv"
    c.data.label_field = "label"
    return classifier_recipe(c, small=variant == "tiny")
