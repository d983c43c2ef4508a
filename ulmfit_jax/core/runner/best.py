"""Keep the best epoch by a validation metric, and stop early (fastai's `SaveModelCallback` and
`EarlyStoppingCallback`).

After each epoch a stage reports its validation metrics; `BestKeeper.update` records them in
`WORKDIR/valid_history.json` (written atomically) and, when the monitored metric improved,
saves the parameters to `WORKDIR/best/` (an orbax checkpoint). Both survive a kill, so a
resumed run knows its best epoch and its patience count. The stage exports the best
parameters at the end and records which epoch and value they came from. A fresh run (not a
resume) starts a new history: what an earlier run left in the workdir is set aside, never
reported as this run's.

Example:

    keeper = BestKeeper(workdir, monitor="accuracy", patience=2, fresh=True)
    for epoch in ...:
        ...
        if keeper.update(epoch, step, {"accuracy": 0.91, "loss": 0.3}, params):
            print("new best")
        if keeper.should_stop:
            break
    params = keeper.best_params(template)
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import jax

from ulmfit_jax.core.runner.checkpointing import Checkpointer

# Which way is better, by metric name (the part before any "/"); others: lower is better.
HIGHER_IS_BETTER = ("accuracy", "f1_macro", "f1", "precision", "recall")


def is_better(monitor: str, value: float, best: float | None) -> bool:
    """Whether `value` of `monitor` improves on `best` (None: nothing recorded yet)."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if monitor.split("/")[0] in HIGHER_IS_BETTER else value < best


class BestKeeper:
    """The best epoch so far by `monitor`, and early stopping after `patience` epochs without
    improvement (0: never stop early).

    `fresh`: a new run (not a resume): an earlier run's `valid_history.json` and `best/` in the
    workdir are removed rather than continued.
    """

    def __init__(self, workdir: str | Path, monitor: str, patience: int = 0, *, fresh: bool):
        if patience < 0:
            raise ValueError(f"train.patience must be >= 0, got {patience}")
        self.workdir = Path(workdir)
        self.monitor, self.patience = monitor, int(patience)
        self.history_path = self.workdir / "valid_history.json"
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        if fresh and jax.process_index() == 0:
            self.history_path.unlink(missing_ok=True)
            shutil.rmtree(self.workdir / "best", ignore_errors=True)
        if self.history_path.exists() and not fresh:
            saved = json.loads(self.history_path.read_text())
            if saved.get("monitor") == monitor:
                self.history, self.best = saved["epochs"], saved["best"]
        self._checkpointer = Checkpointer(self.workdir / "best", max_to_keep=1)

    def seen(self, epoch: int) -> bool:
        return any(h["epoch"] == epoch for h in self.history)

    def metrics_of(self, epoch: int) -> dict[str, float]:
        """The recorded validation metrics of `epoch` (without its epoch and step)."""
        record = next(h for h in self.history if h["epoch"] == epoch)
        return {k: v for k, v in record.items() if k not in ("epoch", "step")}

    def update(self, epoch: int, step: int, metrics: dict[str, float], params: Any) -> bool:
        """Record an epoch's validation metrics; save `params` when the monitored one improved.

        Returns whether it improved. Raises a KeyError naming the metrics when `monitor` is not
        among them.
        """
        if self.monitor not in metrics:
            raise KeyError(
                f"train.monitor={self.monitor!r} is not a validation metric of this stage; "
                f"choose one of {sorted(metrics)}"
            )
        value = float(metrics[self.monitor])
        improved = is_better(self.monitor, value, None if self.best is None else self.best["value"])
        self.history.append(
            {"epoch": epoch, "step": step, **{k: float(v) for k, v in metrics.items()}}
        )
        if improved:
            self._checkpointer.save(step, {"params": params}, {"epoch": epoch, "value": value})
            self.best = {"epoch": epoch, "step": step, "value": value, "monitor": self.monitor}
        self._write()
        return improved

    @property
    def best_metrics(self) -> dict[str, float]:
        """The best epoch's validation metrics (without its epoch and step)."""
        if self.best is None:
            raise ValueError("no epoch has been evaluated yet")
        return self.metrics_of(self.best["epoch"])

    @property
    def epochs_since_best(self) -> int:
        if self.best is None:
            return len(self.history)
        return sum(h["epoch"] > self.best["epoch"] for h in self.history)

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.epochs_since_best >= self.patience

    def best_params(self, template: Any) -> Any:
        """The best epoch's parameters (restored into `template`'s structure and placement)."""
        if self.best is None:
            raise ValueError("no epoch has been evaluated yet")
        restored, _ = self._checkpointer.restore({"params": template}, step=self.best["step"])
        return restored["params"]

    def close(self) -> None:
        self._checkpointer.close()

    def _write(self) -> None:
        if jax.process_index() != 0:
            return
        payload = {"monitor": self.monitor, "best": self.best, "epochs": self.history}
        tmp = self.history_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, self.history_path)
