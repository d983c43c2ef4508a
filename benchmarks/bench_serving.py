"""Serving a classifier: the `jax.export` artifact against `Predictor`, load and predict latency.

    python -m benchmarks.bench_serving                 # the whole-run size: 128/384 x 3, 15k vocab
    python -m benchmarks.bench_serving --emb 400 --hid 1152 --vocab 60000    # fastai's size

Each variant runs in a fresh process (so imports and compilation count, as for a server that
starts): `load_s` is imports + reading the model, `first_s` the first `predict` of `--texts`
reviews (tokenizing and compiling included), `predict_s` the median of the next calls. The
weights are random (latency does not depend on them); the texts are IMDb-like sentences.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
start = time.perf_counter()
kind, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "artifact":
    from ulmfit_jax.inference.artifact import ArtifactPredictor
    predictor = ArtifactPredictor.load(folder)
else:
    from ulmfit_jax.inference.predictor import Predictor
    predictor = Predictor.from_workdir(folder)
load = time.perf_counter() - start
texts = ["This film was " + "really " * (i % 40) + "good, and the plot fine." for i in range(n)]
start = time.perf_counter(); predictor.predict(texts); first = time.perf_counter() - start
times = []
for _ in range(5):
    start = time.perf_counter(); predictor.predict(texts); times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"load_s": load, "first_s": first, "predict_s": times[2]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emb", type=int, default=128)
    parser.add_argument("--hid", type=int, default=384)
    parser.add_argument("--vocab", type=int, default=15000)
    parser.add_argument("--texts", type=int, default=64)
    args = parser.parse_args()

    import jax

    from ulmfit_jax.inference.artifact_export import export_artifact
    from ulmfit_jax.inference.predictor import Predictor
    from ulmfit_jax.models import classifier
    from ulmfit_jax.weights.export import export_params

    config = classifier.ClassifierConfig(
        vocab_size=args.vocab, n_class=2, emb_sz=args.emb, n_hid=args.hid, n_layers=3, bptt=64
    )
    vocab = ["xxunk", "xxpad"] + [f"w{i}" for i in range(args.vocab - 2)]
    vocab[2:8] = ["this", "film", "was", "really", "good", "plot"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir, artifact = Path(tmp) / "clf", Path(tmp) / "artifact"
        params = classifier.init_classifier_params(jax.random.key(0), config)
        meta = {
            "stage": "classify",
            "vocab": vocab,
            "model": dataclasses.asdict(config),
            "label_names": ["neg", "pos"],
            "max_tokens": 0,
        }
        export_params(workdir, params, meta)
        export_artifact(Predictor.from_workdir(workdir), artifact)
        sizes = {
            "export_mib": sum(
                f.stat().st_size for f in (workdir / "export").rglob("*") if f.is_file()
            )
            / 2**20,
            "artifact_mib": sum(f.stat().st_size for f in artifact.iterdir()) / 2**20,
            "forward_program_kib": (artifact / "forward.jax").stat().st_size / 2**10,
        }
        rows = {}
        for kind, folder in (("predictor", workdir), ("artifact", artifact)):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, kind, str(folder), str(args.texts)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"model": f"{args.emb}/{args.hid} x3, vocab {args.vocab}", **sizes}))
    print(f"| variant | load s | first predict s ({args.texts} texts) | predict s |")
    print("| --- | --- | --- | --- |")
    for kind, row in rows.items():
        print(f"| {kind} | {row['load_s']:.2f} | {row['first_s']:.2f} | {row['predict_s']:.3f} |")


if __name__ == "__main__":
    main()
