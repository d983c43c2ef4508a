"""Classify the lines of a text file (or a CSV column) with one or more classifiers.

    python -m train.ulmfit --config train/configs/predict.py \
        --config.eval.workdirs="('runs/clas',)" \
        --config.predict.input=reviews.txt --config.predict.output=predictions.csv
"""

from train.configs.base import base_config, check_variant


def get_config(variant: str = ""):
    check_variant(variant)
    return base_config("predict")
