"""The TFDS reader through `open_split`, mocked: no network, no TensorFlow."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
import tensorflow_datasets.text  # noqa: F401  (registers glue/sst2 and yelp for mocking)

from ulmfit_jax.core.data.decode import decode_value
from ulmfit_jax.core.data.documents import Document
from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tfds import fields_for

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


def tfds_spec(name, tmp_path, **kw):
    return DataSpec(source="tfds", name=name, tfds_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("name, split, label_names", CASES)
def test_mocked_datasets_give_uniform_documents(name, split, label_names, tmp_path):
    with tfds.testing.mock_data(num_examples=5):
        documents = open_split(tfds_spec(name, tmp_path), split)
    assert len(documents) == 5 and documents.where == f"{name}[{split}]"
    assert documents.label_names == label_names
    for number, document in enumerate(documents):
        assert isinstance(document, Document) and isinstance(document.text, str)
        assert document.text and document.where == f"{name}[{split}][{number}]"
        if label_names is None:
            assert document.label is None
        else:
            assert document.label in label_names


def test_ag_news_joins_title_and_description_like_any_two_fields(tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        documents = open_split(tfds_spec("ag_news_subset", tmp_path), "train")
        raw = tfds.data_source("ag_news_subset", split="train", data_dir=str(tmp_path))
        title, description = (decode_value(raw[0][k]) for k in ("title", "description"))
    assert documents[0].fields == (title, description)
    assert documents.texts[0] == f"xxfld 1 {title} xxfld 2 {description}"


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
        documents = open_split(tfds_spec("imdb_reviews", tmp_path), "unsupervised")
        with pytest.raises(ValueError, match=r"imdb_reviews\[train\]\[1\]: invalid UTF-8"):
            open_split(tfds_spec("imdb_reviews", tmp_path, errors="strict"), "train")
    assert [(d.text, d.label) for d in documents] == [("café", "pos"), ("bad \ufffd byte", None)]
    assert documents.dropped_empty == 1  # the blank third record


def test_bad_records_raise_clear_errors(tmp_path):
    with tfds.testing.mock_data(as_data_source_fn=_fake([{"text": b"ok", "label": 7}])):
        with pytest.raises(ValueError, match=r"\[test\]\[0\]: label 7 outside the 2 declared"):
            open_split(tfds_spec("imdb_reviews", tmp_path), "test")
    with tfds.testing.mock_data(as_data_source_fn=_fake([{"text": b"ok", "label": 0}, {}])):
        with pytest.raises(ValueError, match=r"\[test\]\[1\]: missing field\(s\) \['text'\]"):
            open_split(tfds_spec("imdb_reviews", tmp_path), "test")


def test_unprepared_dataset_fails_fast_without_network(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="download=True"):
        open_split(tfds_spec("trec", tmp_path), "train")
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="needs data.name"):
        open_split(DataSpec(source="tfds"), "train")


def test_field_registry_and_decoding():
    assert fields_for("glue/sst2:2.0.0").text_fields == ("sentence",)
    assert fields_for("wikipedia/20230601.en").label_field is None
    assert fields_for("trec").label_field == "label-coarse"
    with pytest.raises(KeyError, match="FieldSpec"):
        fields_for("mnist")
    assert decode_value(np.array(b"x")) == "x" and decode_value("y") == "y"
    with pytest.raises(TypeError):
        decode_value(3)
