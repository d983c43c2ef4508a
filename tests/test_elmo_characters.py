"""Character ids as AllenNLP's ELMoCharacterMapper / bilm-tf's Batcher produce them."""

import numpy as np
import pytest

from elmo_jax.model.characters import (
    BEGINNING_OF_SENTENCE_CHARACTER,
    BEGINNING_OF_WORD_CHARACTER,
    END_OF_SENTENCE_CHARACTER,
    END_OF_WORD_CHARACTER,
    PADDING_CHARACTER,
    ELMoCharacterMapper,
    batch_to_ids,
)


def _expected(byte_ids):
    ids = [PADDING_CHARACTER] * 50
    ids[0] = BEGINNING_OF_WORD_CHARACTER
    ids[1 : len(byte_ids) + 1] = byte_ids
    ids[len(byte_ids) + 1] = END_OF_WORD_CHARACTER
    return [i + 1 for i in ids]


def test_word_is_bow_bytes_eow_padding_shifted_by_one():
    ids = ELMoCharacterMapper().convert_word_to_char_ids("Héllo")
    assert ids.tolist() == _expected(list("Héllo".encode()))
    assert ids[0] == 259 and ids[7] == 260 and ids[8] == 261


def test_long_words_are_cut_to_48_bytes_even_inside_a_character():
    word = "a" * 47 + "é" + "b" * 10  # "é" is 2 bytes: the cut falls inside it
    ids = ELMoCharacterMapper().convert_word_to_char_ids(word)
    assert ids.tolist() == _expected(list(word.encode("utf-8")[:48]))
    assert ids[-1] == END_OF_WORD_CHARACTER + 1


def test_sentence_boundary_tokens_and_tokens_to_add():
    mapper = ELMoCharacterMapper(tokens_to_add={"<mask>": 7})
    cases = (("<S>", BEGINNING_OF_SENTENCE_CHARACTER), ("</S>", END_OF_SENTENCE_CHARACTER))
    for token, char in (*cases, ("<mask>", 7)):
        ids = mapper.convert_word_to_char_ids(token)
        want = [PADDING_CHARACTER + 1] * 50
        want[:3] = [BEGINNING_OF_WORD_CHARACTER + 1, char + 1, END_OF_WORD_CHARACTER + 1]
        assert ids.tolist() == want
    assert (mapper.convert_word_to_char_ids("<S>") == mapper.bos_ids).all()


def test_tokens_to_add_ids_must_fit_the_table():
    with pytest.raises(ValueError, match="0..260"):
        ELMoCharacterMapper(tokens_to_add={"<x>": 300})


def test_lone_surrogates_are_dropped_like_the_reference():
    ids = ELMoCharacterMapper().convert_word_to_char_ids("a\udcffb")
    assert ids.tolist() == _expected([ord("a"), ord("b")])


def test_batch_to_ids_pads_with_zero_tokens():
    ids = batch_to_ids([["The", "cat"], [], ["Hi"]])
    assert ids.shape == (3, 2, 50) and ids.dtype == np.int32
    assert not ids[1].any() and not ids[2, 1].any() and ids[2, 0].all()
    assert batch_to_ids([["a"]], pad_to=5).shape == (1, 5, 50)
    assert batch_to_ids([]).shape == (0, 0, 50)
    with pytest.raises(ValueError, match="shorter"):
        batch_to_ids([["a", "b"]], pad_to=1)
    with pytest.raises(TypeError, match="split"):
        batch_to_ids(["not split"])
