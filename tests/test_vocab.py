"""The vocabulary against fastai's ``make_vocab``, numericalization, and its file formats."""

import collections
import gzip
import json
import pickle

import numpy as np
import pytest

from ulmfit_jax.text.tokenizer import SPECIAL_TOKENS
from ulmfit_jax.text.vocab import FAKE, Vocab, make_vocab

ODD_TOKENS = ["\n", "\n\n▁", "\\", "\\n", "a\\b", "\r", "tab\there", "日本", "▁", "x y", "]", '"']


@pytest.fixture(scope="module")
def fixture_counter(fixtures_dir):
    with gzip.open(fixtures_dir / "tokenizer/fastai_tokens.json.gz", "rt", encoding="utf-8") as f:
        rows = json.load(f)["docs"]
    # fastai's `Counter(p for o in dsets for p in o)`: document order decides ties.
    return collections.Counter(tok for _, _, toks in rows for tok in toks.split(" "))


def _fastai_cases(fixtures_dir):
    with gzip.open(fixtures_dir / "tokenizer/fastai_vocab.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)["cases"]


def test_make_vocab_matches_fastai(fixtures_dir, fixture_counter):
    cases = _fastai_cases(fixtures_dir)
    assert len(cases) >= 5
    for case in cases:
        got = make_vocab(fixture_counter, case["min_freq"], case["max_vocab"])
        assert got == case["itos"], (case["min_freq"], case["max_vocab"])
    # The same through a plain dict (stable sort instead of Counter.most_common).
    case = cases[1]
    assert make_vocab(dict(fixture_counter), case["min_freq"], case["max_vocab"]) == case["itos"]


def test_make_vocab_order_ties_and_padding():
    counter = collections.Counter({"b": 5, "a": 5, "xxmaj": 1, "c": 3, "rare": 2})
    vocab = make_vocab(counter, min_freq=3)
    assert vocab[:9] == list(SPECIAL_TOKENS)
    assert vocab[9:12] == ["b", "a", "c"]  # Ties keep insertion order; rare is dropped.
    assert len(vocab) == 16 and vocab[12:] == [FAKE] * 4
    # A length already a multiple of 8 still gets 8 xxfake, as in fastai.
    assert make_vocab(collections.Counter(), special_tokens=list("abcdefgh"))[8:] == [FAKE] * 8
    assert make_vocab(counter, max_vocab=10)[:10] == list(SPECIAL_TOKENS) + ["b"]
    assert make_vocab(counter, special_tokens=["a", "a"])[:2] == ["a", "b"]


def test_numericalize_and_back():
    vocab = Vocab.from_counter(collections.Counter({"hello": 3, "world": 4}), min_freq=1)
    ids = vocab.numericalize(["xxbos", "hello", "never-seen", "world", FAKE])
    assert ids.dtype == np.int32
    assert ids.tolist() == [2, 10, 0, 9, 0]  # Unknown and the padding token map to xxunk.
    assert vocab.denumericalize(ids) == ["xxbos", "hello", "xxunk", "world", "xxunk"]
    assert vocab.numericalize([]).shape == (0,)
    with pytest.raises(IndexError, match="id 16 at position 1"):
        vocab.denumericalize([3, 16])
    with pytest.raises(IndexError, match="id -1 at position 0"):
        vocab.denumericalize(np.array([-1]))


@pytest.mark.parametrize("suffix", [".txt", ".json", ".pkl", ""])
def test_save_load_round_trip(tmp_path, suffix):
    vocab = Vocab(list(SPECIAL_TOKENS) + ODD_TOKENS + [FAKE, FAKE])
    path = tmp_path / f"vocab{suffix}"
    vocab.save(path)
    assert Vocab.load(path) == vocab
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # The temporary file is gone.


def test_text_format_is_one_token_per_line(tmp_path):
    Vocab(["xxunk", "a\nb", "c\\d"]).save(tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_text(encoding="utf-8") == "xxunk\na\\nb\nc\\\\d\n"


def test_fastai_itos_pkl_interoperates(tmp_path, fixtures_dir):
    itos = _fastai_cases(fixtures_dir)[0]["itos"]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"itos{protocol}.pkl"
        path.write_bytes(pickle.dumps(itos, protocol=protocol))  # As fastai's save_pickle.
        assert Vocab.load(path).itos == tuple(itos)
    Vocab(itos).save(tmp_path / "ours.pkl")
    assert pickle.loads((tmp_path / "ours.pkl").read_bytes()) == itos


def test_pickle_that_would_import_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(ValueError, match=r"evil\.pkl: not a pickled list of str.*OrderedDict"):
        Vocab.load(path)
    path.write_bytes(pickle.dumps(["xxunk", 3]))
    with pytest.raises(ValueError, match=r"evil\.pkl: entry 1 is 3"):
        Vocab.load(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="holds a dict"):
        Vocab.load(path)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"xxunk\na\n\\q\n", r"v\.txt:3: bad escape '\\\\q'"),
        (b"xxunk\na\nends with \\\n", r"v\.txt:3: bad escape '\\\\'"),
        (b"xxunk\n\nb\n", r"v\.txt:2: empty line"),
        (b"xxunk\na\nb\na\n", r"v\.txt:4: duplicate token 'a' \(line 2\)"),
        (b"xxunk\na\ncaf\xe9\n", r"v\.txt:3: not valid UTF-8"),
        (b"xxunk\r\na\r\n", r"v\.txt:1: raw carriage return"),
        (b"", r"v\.txt: no tokens"),
    ],
)
def test_malformed_text_file_names_file_and_line(tmp_path, data, match):
    (tmp_path / "v.txt").write_bytes(data)
    with pytest.raises(ValueError, match=match):
        Vocab.load(tmp_path / "v.txt")


@pytest.mark.parametrize(
    "data, match",
    [
        ('[\n"xxunk",\n"a",\n3\n]', r"v\.json:4: entry 2 is 3"),
        ('[\n"xxunk",\n"a"\n"b"]', r"v\.json:4: expected ',' or ']'"),
        ('[\n"xxunk",\n"a",\n]', r"v\.json:4: invalid JSON"),
        ('{"itos": []}', r"v\.json:1: expected a JSON array"),
        ('["xxunk"]\n[]', r"v\.json:2: data after the JSON array"),
        ('["xxunk", "a", "a"]', r"v\.json: vocabulary entry 2 repeats 'a'"),
        ("[]", r"v\.json: no tokens"),
    ],
)
def test_malformed_json_file_names_file_and_line(tmp_path, data, match):
    (tmp_path / "v.json").write_text(data, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        Vocab.load(tmp_path / "v.json")


def test_vocab_rejects_bad_lists():
    with pytest.raises(ValueError, match="at least one"):
        Vocab([])
    with pytest.raises(ValueError, match="entry 1 is ''"):
        Vocab(["xxunk", ""])
    with pytest.raises(ValueError, match="entry 2 repeats 'a'"):
        Vocab(["xxunk", "a", "a"])
