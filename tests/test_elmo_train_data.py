"""biLM training data: bilm-tf's vocabulary file and its packed bidirectional streams."""

import numpy as np
import pytest

from elmo_jax.model.characters import batch_to_ids
from elmo_jax.training.data import (
    BidirectionalBatches,
    Vocabulary,
    encode_corpus,
    read_sentence_files,
)

SENTENCES = [
    "the cat sat".split(),
    "a dog".split(),
    "the big dog ran fast today".split(),
    "zebra".split(),
    "the cat ran".split(),
    "dogs and cats and more".split(),
    "ok".split(),
]


def reference_windows(sentences, vocab, batch_size, steps, reverse):
    """bilm-tf's `_get_batch` over `LMDataset(test=True)`, written from its description: rows
    take whole sentences from one shared generator; a window copies `how_many = min(len - 1,
    room)` inputs and the targets one step ahead, and keeps the last token for the next window.
    Yields (input tokens [B][T], target ids [B, T])."""

    def encoded():
        for s in sentences:
            tokens = ["<S>", *s, "</S>"]
            if reverse:  # bilm-tf: reversed words, `</S>` first and `<S>` last
                tokens = tokens[::-1]
            yield [vocab.index.get(t, vocab.unk) for t in tokens], tokens

    generator = encoded()
    streams = [None] * batch_size
    while True:
        inputs = [[None] * steps for _ in range(batch_size)]
        targets = np.zeros((batch_size, steps), np.int32)
        for i in range(batch_size):
            pos = 0
            while pos < steps:
                if streams[i] is None or len(streams[i][0]) <= 1:
                    try:
                        streams[i] = next(generator)
                    except StopIteration:
                        return
                ids, tokens = streams[i]
                n = min(len(ids) - 1, steps - pos)
                inputs[i][pos : pos + n] = tokens[:n]
                targets[i, pos : pos + n] = ids[1 : n + 1]
                streams[i] = (ids[n:], tokens[n:])
                pos += n
        yield inputs, targets


def test_vocabulary_file_round_trip_and_order(tmp_path):
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    # Specials first, then by decreasing count; ties in code-point order.
    assert vocab.words == ["<S>", "</S>", "<UNK>", "the", "and", "cat", "dog", "ran"]
    vocab.save(tmp_path / "vocab.txt")
    again = Vocabulary.from_file(tmp_path / "vocab.txt")
    assert again.words == vocab.words
    assert list(again.encode(["the", "zebra"])) == [3, again.unk]


def test_vocabulary_rejects_bad_files(tmp_path):
    (tmp_path / "v.txt").write_text("the\ncat\n<S>\n</S>\n")
    with pytest.raises(ValueError, match=r"v.txt.*\['<UNK>'\]"):
        Vocabulary.from_file(tmp_path / "v.txt")
    with pytest.raises(ValueError, match="more than once"):
        Vocabulary(["<S>", "</S>", "<UNK>", "a", "a"])
    with pytest.raises(ValueError, match="empty corpus"):
        Vocabulary.build([])
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="no sentences"):
        read_sentence_files([tmp_path / "blank.txt"])
    with pytest.raises(ValueError, match="empty"):
        encode_corpus([], Vocabulary.build(SENTENCES))


@pytest.mark.parametrize("direction", [0, 1])
def test_streams_match_bilm_tf_batching(direction):
    vocab = Vocabulary.build(SENTENCES, min_count=2)
    corpus = encode_corpus(SENTENCES, vocab)
    ours = list(
        BidirectionalBatches(corpus, batch_size=2, unroll_steps=4, shuffle=False, repeat=False)
    )
    expected = list(reference_windows(SENTENCES, vocab, 2, 4, reverse=direction == 1))
    assert len(ours) == len(expected) > 2
    for batch, (tokens, targets) in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(batch.targets[direction], targets)
        np.testing.assert_array_equal(batch.chars[direction], batch_to_ids(tokens))


def test_streams_resume_exactly_and_reshuffle_per_epoch():
    corpus = encode_corpus(SENTENCES, Vocabulary.build(SENTENCES))
    kwargs = dict(batch_size=2, unroll_steps=3, shuffle=True, seed=5)
    straight = BidirectionalBatches(corpus, **kwargs)
    first = [next(straight) for _ in range(7)]
    position = straight.position()
    rest = [next(straight) for _ in range(9)]  # crosses into later epochs
    resumed = BidirectionalBatches(corpus, **kwargs, position=position)
    for a, b in zip(rest, [next(resumed) for _ in range(9)], strict=True):
        np.testing.assert_array_equal(a.chars, b.chars)
        np.testing.assert_array_equal(a.targets, b.targets)
    assert straight.position()["directions"][0]["epoch"] >= 1
    # The two directions shuffle independently (two LMDatasets in bilm-tf).
    replay = BidirectionalBatches(corpus, **kwargs)
    np.testing.assert_array_equal(next(replay).targets, first[0].targets)
    forward, backward = (s.order() for s in replay.streams)
    assert sorted(forward) == sorted(backward) and list(forward) != list(backward)
    with pytest.raises(ValueError, match="batch size changed"):
        BidirectionalBatches(corpus, batch_size=3, unroll_steps=3, position=position)
