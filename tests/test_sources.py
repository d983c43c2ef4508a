"""TFDS text sources through `tfds.data_source`, mocked: no network, no TensorFlow."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.text  # noqa: F401  (registers glue/sst2 and yelp for mocking)

from ulmfit_jax.core.data.sources import (
    FieldSpec,
    TextRecord,
    decode_text,
    fields_for,
    load_text_dataset,
)

CASES = [
    ("imdb_reviews", "train", ("neg", "pos")),
    ("imdb_reviews", "unsupervised", ("neg", "pos")),
    ("ag_news_subset", "test", ("World", "Sports", "Business", "Sci/Tech")),
    ("yelp_polarity_reviews", "train", ("1", "2")),
    ("trec", "train", ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")),
    ("glue/sst2", "validation", ("negative", "positive")),
    ("lm1b", "train", None),
    ("wikipedia/20230601.en", "train", None),
]


@pytest.mark.parametrize("name, split, label_names", CASES)
def test_mocked_datasets_give_uniform_records(name, split, label_names, tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        source = load_text_dataset(name, split, data_dir=str(tmp_path))
        records = list(source)
    assert len(source) == 5 and len(records) == 5
    assert source.label_names == label_names
    for r in records:
        assert isinstance(r, TextRecord) and isinstance(r.text, str) and r.text
        if label_names is None:
            assert r.label is None
        else:
            assert isinstance(r.label, int) and 0 <= r.label < len(label_names)
    assert source[-1] == records[-1] and source[1:3] == records[1:3]


def test_ag_news_joins_title_and_description(tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        source = load_text_dataset("ag_news_subset", "train", data_dir=str(tmp_path))
        raw = tfds.data_source("ag_news_subset", split="train", data_dir=str(tmp_path))
        assert source[0].text == f"{raw[0]['title']}\n{raw[0]['description']}"


def _fake(examples):
    return lambda *args, **kwargs: examples


def test_real_array_record_values_bytes_and_missing_labels(tmp_path):
    # Real array_record data comes back as bytes and numpy scalars; -1 means "no label".
    examples = [
        {"text": "café".encode(), "label": np.int64(1)},
        {"text": b"bad \xff byte", "label": np.int64(-1)},
        {"text": b"  \n", "label": np.int64(0)},
    ]
    with tfds.testing.mock_data(as_data_source_fn=_fake(examples)):
        source = load_text_dataset("imdb_reviews", "unsupervised", data_dir=str(tmp_path))
        strict = load_text_dataset("imdb_reviews", "train", data_dir=str(tmp_path), errors="strict")
    assert source[0] == TextRecord("café", 1)
    assert source[1] == TextRecord("bad \ufffd byte", None)
    np.testing.assert_array_equal(source.labels(), [1, -1, 0])
    assert strict[0].text == "café"
    with pytest.raises(ValueError, match=r"imdb_reviews\[train\]\[1\]: invalid UTF-8"):
        strict[1]
    kept, skipped = source.without_empty()
    assert skipped == 1 and len(kept) == 2 and kept[1].label is None
    assert kept.get_many([1, 0]) == [source[1], source[0]]


def test_bad_records_raise_clear_errors(tmp_path):
    examples = [{"text": b"ok", "label": 7}, {"label": 0}]
    with tfds.testing.mock_data(as_data_source_fn=_fake(examples)):
        source = load_text_dataset("imdb_reviews", "test", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"\[test\]\[0\]: label 7 outside the 2 declared"):
        source[0]
    with pytest.raises(ValueError, match=r"\[test\]\[1\]: missing field\(s\) \['text'\]"):
        source[1]
    with pytest.raises(IndexError):
        source[2]


def test_unprepared_dataset_fails_fast_without_network(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_text_dataset("trec", "train", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10


def test_field_registry_and_decoding():
    assert fields_for("glue/sst2:2.0.0").text_fields == ("sentence",)
    assert fields_for("wikipedia/20230601.en").label_field is None
    assert fields_for("trec").label_field == "label-coarse"
    with pytest.raises(KeyError, match="FieldSpec"):
        fields_for("mnist")
    assert FieldSpec(("a",)).separator == "\n"
    assert decode_text(np.array(b"x")) == "x" and decode_text("y") == "y"
    with pytest.raises(TypeError):
        decode_text(3)
