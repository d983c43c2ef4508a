"""Hugging Face datasets as a source: saved datasets, local folders, streaming, ClassLabel names."""

import pytest

from ulmfit_jax.core.data.classification import load_classification
from ulmfit_jax.core.data.hf import documents_of_dataset, is_hf_dataset
from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec

datasets = pytest.importorskip("datasets")

TEXTS = [
    f"review {i}: {'great' if i % 2 else 'dull'} film, {'loved' if i % 2 else 'hated'} it"
    for i in range(40)
]


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def labelled(n=40):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    return datasets.Dataset.from_dict(
        {"text": TEXTS[:n], "label": [i % 2 for i in range(n)]}, features=features
    )


def test_a_saved_dataset_gives_labels_by_name(tmp_path, offline_cache):
    datasets.DatasetDict({"train": labelled(), "test": labelled(10)}).save_to_disk(tmp_path / "ds")
    spec = DataSpec(source="hf", path=str(tmp_path / "ds"), label_field="label")
    train = open_split(spec, "train")
    assert train.texts == TEXTS and train.raw_labels[:2] == ["neg", "pos"]
    assert train.label_names == ("neg", "pos")
    data = load_classification(spec, seed=0)
    assert data.encoder.names == ("neg", "pos") and len(data.train) + len(data.valid) == 40
    with pytest.raises(ValueError, match="has no split 'validation'"):
        open_split(spec, "validation")


def test_a_local_folder_through_load_dataset_and_streaming(tmp_path, offline_cache):
    folder = tmp_path / "reviews"
    folder.mkdir()
    lines = ["text,label"] + [f'"{t}",{i % 2}' for i, t in enumerate(TEXTS)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    for streaming in (False, True):
        spec = DataSpec(source="hf", name=str(folder), label_field="label", streaming=streaming)
        train = open_split(spec, "train")
        assert train.texts == TEXTS and train.raw_labels[:2] == [0, 1]


def test_dataset_objects_and_iterable_datasets(offline_cache):
    spec = DataSpec(source="hf", label_field="label")
    assert is_hf_dataset(labelled()) and not is_hf_dataset({"text": []})
    plain = documents_of_dataset(labelled(), spec, "train")
    streamed = documents_of_dataset(labelled().to_iterable_dataset(), spec, "train")
    assert plain.texts == streamed.texts == TEXTS
    assert plain.raw_labels == streamed.raw_labels


def test_a_missing_column_is_named(offline_cache):
    spec = DataSpec(source="hf", text_fields=("review",), label_field="label")
    with pytest.raises(ValueError, match="train: no column 'review'; it has 'text', 'label'"):
        documents_of_dataset(labelled(), spec, "train")
