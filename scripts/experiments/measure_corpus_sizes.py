"""Token counts of the corpora `python -m train.reproduce --size full` reads, for the GPU check's
time estimate (`benchmarks/gpu_check.py`, `CORPUS`).

    python scripts/experiments/measure_corpus_sizes.py [--sample 3000]

Tokenizes WikiText-2 and TREC-6 whole and a seeded sample of each IMDb split with the project's
fastai tokenizer, and prints per corpus: documents, tokens (the sample's mean times the
documents), and the lognormal fit of the lengths (median, sigma of log length, max seen) that
the GPU check draws its synthetic classifier epochs from.
"""

import argparse
import json

import numpy as np

from ulmfit_jax.batching import corpus
from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.paths import SHARED_DATA


def stats(docs, n_total: int) -> dict:
    lengths = np.array([len(d) for d in docs])
    logs = np.log(np.maximum(lengths, 1))
    return {
        "docs": n_total,
        "tokens": int(round(lengths.mean() * n_total)),
        "median": float(np.median(lengths)),
        "sigma": float(logs.std()),
        "max": int(lengths.max()),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=3000)
    args = parser.parse_args()
    out = {}
    rng = np.random.default_rng(0)
    for split in ("train", "test", "unsupervised"):  # a sample of each
        texts = open_split(DataSpec(source="imdb"), split).texts
        pick = rng.choice(len(texts), min(args.sample, len(texts)), replace=False)
        docs = corpus.tokenize_texts([texts[i] for i in pick], n_workers=1)
        out[f"imdb_{split}"] = stats(docs, len(texts))
    wiki = DataSpec(source="local", format="wikitext", path=str(SHARED_DATA / "wikitext-2"))
    texts = open_split(wiki, "train").texts
    out["wikitext2_train"] = stats(corpus.tokenize_texts(texts, n_workers=1), len(texts))
    trec = DataSpec(source="local", format="trec", path=str(SHARED_DATA / "trec"))
    for split in ("train", "test"):
        texts = open_split(trec, split).texts
        out[f"trec_{split}"] = stats(corpus.tokenize_texts(texts, n_workers=1), len(texts))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
