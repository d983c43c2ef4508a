"""Evaluate classifiers (one, or a forward+backward ensemble) on your own test file.

    python -m train.ulmfit --config train/configs/evaluate_local.py --workdir runs/eval \
        --config.data.path=DIR --config.data.format=csv --config.data.text_fields="('review',)" \
        --config.data.label_field=label --config.eval.workdirs="('runs/clas','runs/clas_bwd')"

Reads `DIR/test.csv` (or `data.splits="test=FILE"`) and writes `metrics.json`,
`confusion_matrix.csv`, `confusion_matrix.png` and `top_losses.csv` into the workdir.
"""

from train.configs.base import base_config, check_variant, tiny


def get_config(variant: str = ""):
    check_variant(variant)
    c = base_config("evaluate")
    c.data.source, c.data.format = "local", "csv"
    c.data.label_field = "label"
    if variant == "tiny":
        tiny(c)
    return c
