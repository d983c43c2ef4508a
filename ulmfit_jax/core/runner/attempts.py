"""How long a stage trained, summed over the attempts it took to finish.

A stage killed and resumed (a session's end, a preemption) runs in several attempts; timing
only the one that finishes undercounts it. Each attempt appends its wall-clock start to
`WORKDIR/attempts.jsonl`; a finished stage's time is then

    sum over earlier attempts of (its last metrics record - its start) + (end - last start)

where an earlier attempt's last record is the latest `"time"` in any `metrics.jsonl` under the
workdir before the next attempt started. Approximate on both sides: what a killed attempt did
after its last record (steps, a validation pass, an export) is not counted, nor is the time
between attempts; the steps between its last checkpoint and its last record are counted in
both attempts (the next one trains them again).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

ATTEMPTS = "attempts.jsonl"


def record_attempt(workdir: str | os.PathLike) -> float:
    """Append this attempt's start (`time.time()`) to `workdir/attempts.jsonl`; returns it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(workdir / ATTEMPTS, "a", encoding="utf-8") as f:
        f.write(json.dumps({"start": start}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return start


def _lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # the half-written last line of a killed attempt
            continue
    return records


def attempt_starts(workdir: str | os.PathLike) -> list[float]:
    """The recorded starts, oldest first (empty when none was recorded)."""
    path = Path(workdir) / ATTEMPTS
    if not path.is_file():
        return []
    return sorted(float(r["start"]) for r in _lines(path) if "start" in r)


def stage_seconds(workdir: str | os.PathLike, end: float) -> float | None:
    """Seconds the stage in `workdir` trained across its attempts, the last ending at `end`
    (`time.time()`); None when no attempt was recorded."""
    workdir = Path(workdir)
    starts = attempt_starts(workdir)
    if not starts:
        return None
    times = sorted(
        float(r["time"])
        for path in workdir.rglob("metrics.jsonl")
        for r in _lines(path)
        if "time" in r
    )
    total = end - starts[-1]
    for start, next_start in itertools.pairwise(starts):
        inside = [t for t in times if start <= t < next_start]
        total += (inside[-1] - start) if inside else 0.0
    return total
