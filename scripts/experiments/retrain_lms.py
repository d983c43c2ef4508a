"""Train the whole-review run's forward language models again, alone (fastai-column issue).

    python scripts/experiments/retrain_lms.py --workdir runs/lms     # resumes when re-run

The stages are `train.reproduce`'s own (`--size whole`: pretrain on WikiText-2, then lm_imdb
on all 75,000 IMDb reviews and lm_trec on TREC-6's questions), in that order; a stage cut off
is resumed from its last checkpoint and a finished one (its `metrics.json` there) is skipped.
The perplexities go to `WORKDIR/results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from train import ulmfit
from train.reproduce import experiments

STAGES = ("pretrain", "lm_imdb", "lm_trec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    plan = dict(experiments(args.workdir, "whole"))
    path = args.workdir / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in STAGES:
        if name in results:
            continue
        stage_dir = args.workdir / name
        start = time.time()
        print(f"== {name} ==", flush=True)
        metrics = ulmfit.run(plan[name], str(stage_dir), resume=stage_dir.exists())
        results[name] = {k: float(v) for k, v in metrics.items()}
        results[name]["seconds_this_attempt"] = time.time() - start
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
