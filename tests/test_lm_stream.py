"""LM stream: fastai layout parity, state carry-over, variable BPTT, sharding and resuming."""

import json

import numpy as np
import pytest

from ulmfit_jax.batching.lm_stream import (
    LMStream,
    LoaderState,
    flatten_documents,
    gather_stream,
)


def _docs(fastai_batching):
    lens, ids = fastai_batching["lm_doc_lengths"], fastai_batching["lm_tokens"]
    return np.split(ids, np.cumsum(lens)[:-1])


@pytest.mark.parametrize("bs, sl", [(4, 7), (3, 10)])
@pytest.mark.parametrize("backward", [False, True])
def test_fixed_bptt_matches_fastai_lmdataloader(fastai_batching, bs, sl, backward):
    key = f"lm_bs{bs}_sl{sl}_{'bwd' if backward else 'fwd'}"
    docs = _docs(fastai_batching)
    stream = LMStream(docs, batch_size=bs, bptt=sl, shuffle=False, backward=backward)
    batches = list(stream.epoch_batches(0))
    assert len(batches) == int(fastai_batching[f"{key}_num"]) == stream.num_batches()
    for k, b in enumerate(batches):
        x, y = fastai_batching[f"{key}_x{k}"], fastai_batching[f"{key}_y{k}"]
        assert b.seq_len == x.shape[1]
        np.testing.assert_array_equal(b.tokens[:, : b.seq_len], x)
        np.testing.assert_array_equal(b.targets[:, : b.seq_len], y)
        # The short final window is padded to the one compiled shape.
        assert b.tokens.shape == (bs, sl) and b.tokens.dtype == np.int32
        assert (b.tokens[:, b.seq_len :] == 1).all() and (b.lengths == b.seq_len).all()
    # pad_last=False gives fastai's exact shapes.
    raw = LMStream(docs, batch_size=bs, bptt=sl, shuffle=False, backward=backward, pad_last=False)
    assert [b.tokens.shape for b in raw.epoch_batches(0)] == [
        fastai_batching[f"{key}_x{k}"].shape for k in range(len(batches))
    ]


def test_rows_continue_across_windows():
    docs = [np.arange(s, s + n) for s, n in [(0, 50), (50, 31), (81, 200)]]
    stream = LMStream(docs, batch_size=4, bptt=9, shuffle=False)
    batches = list(stream.epoch_batches(0))
    rows = np.concatenate([b.tokens[:, : b.seq_len] for b in batches], axis=1)
    # Consecutive ids along a row: window k+1 of row r continues window k of row r.
    assert (np.diff(rows, axis=1) == 1).all()
    assert rows.shape == (4, stream.row_length) and stream.row_length == (281 - 1) // 4
    for b in batches:
        np.testing.assert_array_equal(b.targets[:, : b.seq_len], b.tokens[:, : b.seq_len] + 1)


def test_shuffle_is_seeded_per_epoch_and_keeps_documents_whole():
    docs = [np.full(n, i + 2) for i, n in enumerate(range(3, 40))]
    stream = LMStream(docs, batch_size=2, bptt=5, seed=3)
    again = LMStream(docs, batch_size=2, bptt=5, seed=3)
    assert (stream.document_order(0) == again.document_order(0)).all()
    assert not (stream.document_order(0) == stream.document_order(1)).all()
    tokens, offsets = flatten_documents(docs)
    order = stream.document_order(1)
    full = gather_stream(tokens, offsets, order, 0, len(tokens))
    np.testing.assert_array_equal(full, np.concatenate([docs[i] for i in order]))
    rows = np.concatenate([b.tokens[:, : b.seq_len] for b in stream.epoch_batches(1)], axis=1)
    np.testing.assert_array_equal(rows.ravel(), full[: rows.size])


def test_backward_reverses_each_document():
    docs = [np.array([2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9, 10])]
    stream = LMStream(docs, batch_size=1, bptt=20, shuffle=False, backward=True)
    (batch,) = stream.epoch_batches(0)
    np.testing.assert_array_equal(batch.tokens[0, : batch.seq_len], [4, 3, 2, 6, 5, 10, 9, 8])
    np.testing.assert_array_equal(batch.targets[0, : batch.seq_len], [3, 2, 6, 5, 10, 9, 8, 7])


def test_variable_bptt_lengths_shapes_and_lr_scale():
    rng = np.random.default_rng(0)
    docs = [rng.integers(2, 100, n) for n in rng.integers(50, 400, 400)]
    stream = LMStream(docs, batch_size=8, bptt=70, seed=1, variable_bptt=True)
    lengths = stream.window_lengths(0)
    assert lengths.sum() == stream.row_length and lengths[:-1].min() >= 5
    assert lengths.max() <= 90
    # ~5% of windows use bptt / 2.
    short = (lengths[:-1] < 52).mean()
    assert 0.01 < short < 0.12, short
    assert (stream.window_lengths(0) == lengths).all()
    assert not np.array_equal(stream.window_lengths(1)[:20], lengths[:20])
    widths = stream.window_shapes(0)
    assert len(widths) <= 12 and all(w % 8 == 0 for w in widths)
    at = 0
    inputs, _ = stream._rows(0)
    for b, n in zip(stream.epoch_batches(0), lengths, strict=True):
        assert b.seq_len == n and b.tokens.shape[1] == stream.padded_width(n) >= n
        assert b.lr_scale == pytest.approx(n / 70)
        np.testing.assert_array_equal(b.tokens[:, :n], inputs[:, at : at + n])
        at += n


def test_shards_assemble_the_global_batch():
    rng = np.random.default_rng(1)
    docs = [rng.integers(2, 50, n) for n in rng.integers(1, 60, 80)]
    kw = dict(batch_size=8, bptt=11, seed=5, variable_bptt=True)
    whole = list(LMStream(docs, **kw).epoch_batches(2))
    shards = [
        list(LMStream(docs, shard_index=i, shard_count=4, **kw).epoch_batches(2)) for i in range(4)
    ]
    for k, b in enumerate(whole):
        parts = [s[k] for s in shards]
        assert all(p.tokens.shape == (2, b.tokens.shape[1]) for p in parts)
        np.testing.assert_array_equal(np.concatenate([p.tokens for p in parts]), b.tokens)
        np.testing.assert_array_equal(np.concatenate([p.targets for p in parts]), b.targets)
    with pytest.raises(ValueError, match="shard_count"):
        LMStream(docs, batch_size=6, shard_count=4)


def test_resume_from_saved_state_gives_the_exact_next_batch():
    rng = np.random.default_rng(2)
    docs = [rng.integers(2, 50, n) for n in rng.integers(1, 60, 40)]
    stream = LMStream(docs, batch_size=4, bptt=6, seed=9, variable_bptt=True)
    reference = list(stream.iterator(num_epochs=3))
    it = stream.iterator(num_epochs=3)
    n_first = stream.num_batches(0) + 2  # stop inside epoch 1
    for _ in range(n_first):
        next(it)
    saved = json.loads(json.dumps(it.state.to_dict()))
    assert saved == {"epoch": 1, "step": 2, "seed": 9}
    resumed = list(
        LMStream(docs, batch_size=4, bptt=6, seed=9, variable_bptt=True).iterator(
            LoaderState.from_dict(saved), num_epochs=3
        )
    )
    assert len(resumed) == len(reference) - n_first
    for a, b in zip(resumed, reference[n_first:], strict=True):
        np.testing.assert_array_equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="seed"):
        stream.iterator(LoaderState(seed=1))


def test_bad_inputs():
    with pytest.raises(ValueError, match="too few"):
        LMStream([np.arange(3)], batch_size=4)
    with pytest.raises(ValueError, match="1-D"):
        LMStream([np.zeros((2, 2), int)], batch_size=1)
    with pytest.raises(ValueError, match="int32"):
        LMStream([np.array([-1, 2, 3])], batch_size=1)
    tokens, offsets = flatten_documents((np.arange(10), np.array([0, 4, 10])))
    assert tokens.dtype == np.int32 and list(offsets) == [0, 4, 10]
    with pytest.raises(ValueError, match="offsets"):
        flatten_documents((np.arange(10), np.array([0, 4, 9])))
