"""The whole ULMFiT method from Python, keyword arguments only, no config file.

    import ulmfit_jax as uj

    uj.finetune_language_model("runs/lm", data="reviews.csv", text_fields=["review"],
                               pretrained="wt103_fwd")
    clf = uj.train_classifier("runs/clf", data="reviews.csv", text_fields=["review"],
                              label_field="label", valid_pct=0.1, language_model="runs/lm")
    print(clf.metrics)                              # the best epoch's validation metrics
    print(clf.predictor.predict(["A fine film."]).labels)
    uj.evaluate(["runs/clf"], data="test.csv", text_fields=["review"], label_field="label")

Each function builds the same config as the command line's (`train/configs/*_local.py`, from
`ulmfit_jax.stages.defaults`), applies `overrides` (dotted keys, e.g.
`{"train.batch_size": 32, "phases": ((1, 1, 1e-2), (0, 2, 1e-3))}`), and runs the same stage
function. `data` is a file (CSV/TSV/JSONL, or plain text lines for a language model), a folder
of `train.*`/`test.*` files, or a pandas DataFrame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ulmfit_jax.core.data.tables import format_of, is_frame, read_table
from ulmfit_jax.stages.defaults import base_config, classifier_recipe, lm_recipe


@dataclasses.dataclass
class StageResult:
    """What a stage left: its workdir and its metrics; `predictor` for a classifier."""

    workdir: Path
    metrics: dict

    @property
    def predictor(self):
        from ulmfit_jax.inference.predictor import Predictor

        return Predictor.from_workdir(self.workdir)


def _data_keys(data: Any, text_fields, label_field, valid_pct, valid_col) -> dict[str, Any]:
    keys: dict[str, Any] = {"data.text_fields": tuple(text_fields)}
    if label_field:
        keys["data.label_field"] = label_field
    if valid_pct is not None:
        keys["data.valid_pct"] = float(valid_pct)
    if valid_col:
        keys["data.valid_col"] = valid_col
    if data is not None and not is_frame(data):
        path = Path(data).expanduser()
        keys["data.source"] = "local"
        keys["data.path"] = str(path)
        if path.is_file():
            try:
                keys["data.format"] = format_of(path)
            except ValueError:
                keys["data.format"] = "lines"  # plain text, one document per line
                keys["data.text_fields"] = ("text",)
    return keys


def _config(stage: str, keys: Mapping[str, Any], overrides: Mapping[str, Any] | None, small):
    config = base_config(stage)
    config.data.source, config.data.format = "local", "csv"
    if stage == "classify":
        classifier_recipe(config, small)
    elif stage == "finetune_lm":
        lm_recipe(config, small)
    for key, value in {**keys, **(overrides or {})}.items():
        node, *path = key.split(".")
        target = config
        for part in [node, *path][:-1]:
            target = target[part]
        leaf = [node, *path][-1]
        if leaf not in target:
            raise KeyError(f"unknown config key {key!r}")
        target[leaf] = type(target[leaf])(value) if isinstance(target[leaf], tuple) else value
    return config


def _tables(data: Any, valid: Any = None) -> dict | None:
    """DataFrames passed in: `{"train": Table, "valid": Table}`."""
    if not is_frame(data):
        return None
    tables = {"train": read_table(data)}
    if valid is not None:
        tables["valid"] = read_table(valid)
    return tables


@contextlib.contextmanager
def _frame_as_file(data: Any, name: str, prefix: str) -> Iterator[Any]:
    """A DataFrame as a CSV file in a temporary folder for the stage to read, removed on every
    way out (errors and Ctrl-C too); an error naming that file names "the DataFrame" instead.
    Anything else is passed through."""
    if not is_frame(data):
        yield data
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    path = folder / name
    try:
        data.to_csv(path, index=False)
        yield path
    except Exception as error:
        if error.args and isinstance(error.args[0], str):
            message = error.args[0].replace(str(path), "the DataFrame")
            error.args = (message.replace(str(folder), "the DataFrame's folder"), *error.args[1:])
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def finetune_language_model(
    workdir: str | os.PathLike,
    *,
    data: Any,
    text_fields: Sequence[str] = ("text",),
    pretrained: str = "",
    init_workdir: str = "",
    valid_pct: float | None = None,
    backward: bool = False,
    resume: bool = False,
    tiny_model: bool = False,
    overrides: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """ULMFiT's stage 2: fine-tune a language model on the target text.

    Args:
        data: the text (module docstring); labels are not needed.
        pretrained: a registered model ("wt103_fwd"), or `init_workdir`: a pretrain or LM run.
        tiny_model: the tests' tiny size (seconds on a CPU).
        callbacks: the training loop's (`ulmfit_jax.core.runner.callbacks`: a custom metric,
            a logger, an early-stop rule).
    """
    from ulmfit_jax.stages.lm_stage import lm_stage

    with _frame_as_file(data, "train.csv", "ulmfit_lm_") as data:
        keys = _data_keys(data, text_fields, None, valid_pct, "")
        keys.update({"backward": backward, "init.workdir": init_workdir})
        if pretrained:
            keys["init.pretrained"] = pretrained
        config = _config("finetune_lm", keys, overrides, tiny_model)
        if not (pretrained or init_workdir):
            config.stage = "pretrain"  # no initial weights: train the LM from scratch
        return StageResult(
            Path(workdir), lm_stage(config, workdir, resume=resume, callbacks=callbacks)
        )


def train_classifier(
    workdir: str | os.PathLike,
    *,
    data: Any,
    text_fields: Sequence[str] = ("text",),
    label_field: str = "label",
    language_model: str | os.PathLike = "",
    valid_pct: float | None = None,
    valid_col: str = "",
    valid_data: Any = None,
    label_delim: str = "",
    regression: bool = False,
    backward: bool = False,
    resume: bool = False,
    tiny_model: bool = False,
    overrides: Mapping[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
) -> StageResult:
    """ULMFiT's stage 3: a classifier with gradual unfreezing, best epoch by validation.

    Args:
        language_model: the fine-tuned LM's workdir ("" trains from scratch).
        valid_pct / valid_col / valid_data: the validation set (a seeded fraction of train, a
            true/false column, or a separate file or DataFrame).
        label_delim: multi-label data ("a;b"); regression: numeric targets.
        callbacks: the training loop's (`ulmfit_jax.core.runner.callbacks`).
    """
    keys = _data_keys(data, text_fields, label_field, valid_pct, valid_col)
    keys.update({"backward": backward, "init.workdir": str(language_model)})
    keys["data.label_delim"] = label_delim
    if regression:
        keys["data.label_kind"] = "regression"
    if valid_data is not None and not is_frame(valid_data):
        keys["data.splits"] = _splits(data, valid_data)
        keys["data.path"] = str(Path(valid_data).expanduser().parent)
        keys["data.valid_split"] = "valid"
    elif valid_data is not None:
        keys["data.valid_split"] = "valid"
    config = _config("classify", keys, overrides, tiny_model)
    from ulmfit_jax.stages.classifier_stage import classify_stage

    tables = _tables(data, valid_data)
    metrics = classify_stage(config, workdir, resume=resume, tables=tables, callbacks=callbacks)
    return StageResult(Path(workdir), metrics)


def _splits(train: Any, valid: Any) -> str:
    train, valid = Path(train).expanduser().resolve(), Path(valid).expanduser().resolve()
    if train.parent != valid.parent:
        raise ValueError("data and valid_data must be files in the same folder")
    return f"train={train.name},valid={valid.name}"


def evaluate(
    workdirs: Sequence[str | os.PathLike],
    *,
    data: Any,
    text_fields: Sequence[str] = ("text",),
    label_field: str = "label",
    out_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict:
    """Test metrics of classifiers (and their ensemble); writes the confusion matrix and the
    top losses. `data` is the test file (or a folder holding `test.*`)."""
    from ulmfit_jax.inference.stages import evaluate_stage

    with _frame_as_file(data, "test.csv", "ulmfit_eval_") as data:
        keys = _data_keys(data, text_fields, label_field, None, "")
        path = Path(data).expanduser()
        if path.is_file():
            keys["data.path"] = str(path.parent)
            keys["data.splits"] = f"test={path.name}"
        keys["eval.workdirs"] = tuple(str(w) for w in workdirs)
        config = _config("evaluate", keys, overrides, False)
        return evaluate_stage(config, out_dir)
