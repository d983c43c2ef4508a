"""How many padded shapes an epoch compiles, with fastai's tokenizer on real IMDb reviews.

    python scripts/experiments/measure_batch_shapes.py [--imdb PATH] [--batch-size 64] [--bptt 72]

Classifier batches (SortedDL-style, padded to multiples of bptt) over the 25,000 training and
25,000 test reviews, and LM windows with variable-length BPTT over the training reviews.
"""

import argparse
import time

import numpy as np

from ulmfit_jax.batching import corpus as text_data
from ulmfit_jax.batching.classifier_batches import ClassifierBatches
from ulmfit_jax.batching.lm_stream import LMStream
from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imdb", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=72)
    args = parser.parse_args()
    data = DataSpec(source="imdb", path=args.imdb or "")
    for split in ("train", "test"):
        documents = open_split(data, split)
        texts = documents.texts
        names = sorted({str(label) for label in documents.raw_labels})
        labels = np.array([names.index(str(label)) for label in documents.raw_labels], np.int32)
        start = time.perf_counter()
        docs = text_data.tokenize_texts(texts, n_workers=2)
        seconds = time.perf_counter() - start
        lengths = np.array([len(d) for d in docs])
        ids = [np.zeros(n, np.int32) + 2 for n in lengths]
        print(
            f"{split}: {len(docs):,} reviews, {lengths.sum():,} tokens (tokenized or read "
            f"from cache in {seconds:.1f} s), length median {np.median(lengths):.0f}, "
            f"max {lengths.max():,}"
        )
        batches = ClassifierBatches(
            ids,
            labels,
            batch_size=args.batch_size,
            seed=0,
            shuffle=split == "train",
            pad_multiple=args.bptt,
        )
        for epoch in range(3 if split == "train" else 1):
            order = batches.epoch_order(epoch)
            widths = [
                batches._width(batches._batch_rows(order, k)) for k in range(batches.num_batches())
            ]
            real = lengths[order[: len(widths) * args.batch_size]].sum() / (
                np.sum(widths) * args.batch_size
            )
            print(
                f"  classifier epoch {epoch}: {len(widths)} batches, {len(set(widths))} "
                f"distinct widths (of {int(np.ceil(lengths.max() / args.bptt))} possible), "
                f"{real:.0%} of positions real"
            )
        if split == "train":
            stream = LMStream(ids, batch_size=args.batch_size, bptt=70, variable_bptt=True)
            for epoch in range(3):
                shapes = {stream.padded_width(int(n)) for n in stream.window_lengths(epoch)}
                print(f"  LM epoch {epoch}, variable bptt 70: {len(shapes)} distinct widths")


if __name__ == "__main__":
    main()
