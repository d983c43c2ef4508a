"""TREC-6 accuracy of the same classifier on ELMo (all biLM layers mixed) and on the
character-CNN layer alone, over a few seeds.

    python scripts/experiments/elmo_trec_compare.py --bilm runs/elmo_sample/export --workdir
    runs/trec \
        --seeds 0 1 2

Each (features, seed) pair is one `python -m train.elmo_downstream` run in its own workdir
(`WORKDIR/{elmo,cnn}_seed{S}`); finished runs are not redone. Prints one line per run and the
mean test accuracy of each feature set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from train.configs import elmo_trec
from train.elmo_downstream import run

FEATURES = {"elmo": (0, 1, 2), "cnn": (0,)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bilm", required=True, help="an exported biLM folder")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data", default="../shared/data/trec")
    parser.add_argument("--tfds-dir", default="", help="where to prepare the local dataset")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64, help="BiLSTM size; 0: pooling only")
    args = parser.parse_args()
    results: dict[str, list[float]] = {name: [] for name in FEATURES}
    for seed in args.seeds:
        for name, layers in FEATURES.items():
            workdir = Path(args.workdir) / f"{name}_seed{seed}"
            done = workdir / "metrics.jsonl"
            records = [json.loads(x) for x in done.open()] if done.exists() else []
            tested = [r for r in records if "test/accuracy" in r]
            if tested:
                metrics = {k: v for k, v in tested[-1].items() if k.startswith("test/")}
            else:
                c = elmo_trec.get_config()
                c.seed = seed
                c.bilm.dir = args.bilm
                c.data.path = args.data
                c.data.tfds_dir = args.tfds_dir
                c.classifier.layers = layers
                c.train.epochs = args.epochs
                c.classifier.hidden = args.hidden
                metrics = run(c, str(workdir), resume=workdir.exists())
            results[name].append(metrics["test/accuracy"])
            print(
                f"{name:>4} seed {seed}: test accuracy {metrics['test/accuracy']:.4f}", flush=True
            )
    for name, accuracies in results.items():
        print(
            f"{name:>4}: mean test accuracy {np.mean(accuracies):.4f} "
            f"(+- {np.std(accuracies):.4f} over {len(accuracies)} seeds)"
        )


if __name__ == "__main__":
    main()
