"""Classifier batches: fastai SortedDL order, right padding, bounded widths, sharding, resume."""

import numpy as np
import pytest

from ulmfit_jax.batching.classifier_batches import (
    ClassifierBatches,
    scatter_to_input_order,
    sorted_batch_order,
)
from ulmfit_jax.batching.lm_stream import LoaderState


def _docs(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 1000, n).astype(np.int32) for n in lengths], rng.integers(
        0, 3, len(lengths)
    )


def test_training_order_matches_fastai_sorteddl(fastai_batching):
    lengths, bs = fastai_batching["cls_lengths"], int(fastai_batching["cls_bs"])
    order = sorted_batch_order(
        lengths, bs, fastai_batching["cls_perm"], fastai_batching["cls_batch_perm"]
    )
    np.testing.assert_array_equal(order, fastai_batching["cls_train_order"])
    # fastai drops the final partial batch of a training epoch; so do we.
    expected = fastai_batching["cls_train_batches"]
    docs, _ = _docs(lengths)
    batches = ClassifierBatches(docs, batch_size=bs, seed=0)
    assert batches.num_batches() == len(expected)
    # The first batch holds the longest example.
    first = next(batches.epoch_batches(0))
    assert first.lengths.max() == lengths.max()


def test_evaluation_order_matches_fastai_and_maps_back(fastai_batching):
    lengths = fastai_batching["cls_lengths"]
    docs, labels = _docs(lengths)
    batches = ClassifierBatches(docs, labels, batch_size=8, shuffle=False)
    np.testing.assert_array_equal(batches.epoch_order(), fastai_batching["cls_valid_order"])
    out = list(batches.epoch_batches(0))
    assert len(out) == -(-len(docs) // 8)  # nothing dropped
    last = out[-1]
    assert last.tokens.shape[0] == 8 and (~last.mask).sum() == 8 * len(out) - len(docs)
    assert (last.lengths[~last.mask] == 1).all() and (last.tokens[~last.mask] == 1).all()
    # Per-example "predictions" (here the first token) come back in input order.
    first_tokens = scatter_to_input_order(
        [b.tokens[:, 0] for b in out], [b.indices for b in out], len(docs)
    )
    np.testing.assert_array_equal(first_tokens, [d[0] for d in docs])
    got_labels = scatter_to_input_order(
        [b.labels for b in out], [b.indices for b in out], len(docs)
    )
    np.testing.assert_array_equal(got_labels, labels)
    with pytest.raises(ValueError, match="exactly once"):
        scatter_to_input_order([out[0].labels], [out[0].indices], len(docs))


def test_right_padding_and_bucketed_widths():
    docs, labels = _docs([5, 72, 73, 150, 1, 144, 30, 71])
    batches = ClassifierBatches(docs, labels, batch_size=2, shuffle=False)
    for b in batches.epoch_batches(0):
        assert b.tokens.dtype == np.int32 and b.tokens.shape[1] % 72 == 0
        assert b.tokens.shape[1] == -(-b.lengths.max() // 72) * 72
        for row, n, i in zip(b.tokens, b.lengths, b.indices, strict=True):
            np.testing.assert_array_equal(row[:n], docs[i])
            assert (row[n:] == 1).all()
            assert b.labels[list(b.indices).index(i)] == labels[i]
    assert batches.batch_shapes() == [72, 144, 216]


def test_training_epochs_are_seeded_and_cover_each_example_once():
    docs, _ = _docs(np.random.default_rng(3).integers(1, 500, 1000))
    batches = ClassifierBatches(docs, batch_size=16, seed=4)
    e0, e1 = batches.epoch_order(0), batches.epoch_order(1)
    assert sorted(e0) == list(range(1000)) and not np.array_equal(e0, e1)
    np.testing.assert_array_equal(ClassifierBatches(docs, batch_size=16, seed=4).epoch_order(0), e0)
    seen = np.concatenate([b.indices for b in batches.epoch_batches(0)])
    assert len(seen) == 1000 // 16 * 16 and len(set(seen)) == len(seen)
    # Sorted-ish: lengths within a batch are close (sorted chunks of 50 batches).
    widths = [b.lengths.max() - b.lengths.min() for b in batches.epoch_batches(0)]
    assert np.median(widths) < 30


def test_shards_assemble_the_global_batch():
    docs, labels = _docs(np.random.default_rng(5).integers(1, 300, 203))
    for shuffle in (True, False):
        kw = dict(batch_size=8, seed=1, shuffle=shuffle)
        whole = list(ClassifierBatches(docs, labels, **kw).epoch_batches(3))
        parts = [
            list(
                ClassifierBatches(docs, labels, shard_index=i, shard_count=2, **kw).epoch_batches(3)
            )
            for i in range(2)
        ]
        assert len(parts[0]) == len(parts[1]) == len(whole)
        for k, b in enumerate(whole):
            for field in ("tokens", "lengths", "labels", "indices"):
                got = np.concatenate([getattr(p[k], field) for p in parts])
                np.testing.assert_array_equal(got, getattr(b, field))


def test_resume_gives_the_exact_next_batch():
    docs, labels = _docs(np.random.default_rng(6).integers(1, 200, 100))
    batches = ClassifierBatches(docs, labels, batch_size=8, seed=2)
    reference = list(batches.iterator(num_epochs=2))
    it = batches.iterator(num_epochs=2)
    for _ in range(15):
        next(it)
    assert it.state == LoaderState(epoch=1, step=3, seed=2)
    rest = list(batches.iterator(LoaderState.from_dict(it.state.to_dict()), num_epochs=2))
    assert len(rest) == len(reference) - 15
    for a, b in zip(rest, reference[15:], strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty document.*index 1"):
        ClassifierBatches([np.array([2, 3]), np.array([], np.int32)], batch_size=1)
    with pytest.raises(ValueError, match="labels"):
        ClassifierBatches([np.array([2, 3])], [0, 1], batch_size=1)
    with pytest.raises(ValueError, match="no full batch"):
        ClassifierBatches([np.array([2, 3])], batch_size=4)
    truncated = ClassifierBatches([np.arange(2, 300)], batch_size=1, max_len=100)
    assert next(truncated.epoch_batches(0)).tokens.shape == (1, 144)


def test_backward_reverses_documents_and_keeps_right_padding():
    docs = [np.array([2, 3, 4]), np.array([5, 6])]
    (batch,) = ClassifierBatches(docs, batch_size=2, shuffle=False, backward=True).epoch_batches(0)
    np.testing.assert_array_equal(batch.tokens[:, :3], [[4, 3, 2], [6, 5, 1]])
    np.testing.assert_array_equal(batch.lengths, [3, 2])
