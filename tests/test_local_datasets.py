"""Local-file TFDS builders: formats, cache keys, bad input, and the real copies in ../shared."""

import json
import logging
import os
import tarfile

import pytest
import tensorflow_datasets as tfds

from ulmfit_jax.core.data import local_formats
from ulmfit_jax.core.data.local_datasets import load_local_dataset, prepare_local_dataset
from ulmfit_jax.core.data.sources import TextRecord, load_text_dataset

tfds.disable_progress_bar()


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "tfds"


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_lines_skip_empty_documents_and_keep_order(tmp_path, data_dir, caplog):
    _write(tmp_path / "corpus.txt", "first line\n\n   \nsecond line\nthird\n")
    with caplog.at_level(logging.WARNING):
        builder = prepare_local_dataset(tmp_path / "corpus.txt", "lines", data_dir=data_dir)
    source = load_text_dataset(builder, "train")
    assert [r.text for r in source] == ["first line", "second line", "third"]
    assert source.label_names is None and source[0].label is None
    assert builder.info.metadata["skipped_empty"] == {"train": 2}
    assert "skipped 2 empty" in caplog.text
    assert str(data_dir) in builder.data_dir


def test_csv_with_header_quoted_newlines_and_discovered_classes(tmp_path, data_dir):
    _write(
        tmp_path / "d.csv",
        'id,title,body,stars\n1,Good,"line one\nline two",10\n2,,plain,2\n3,Bad,x,1\n',
    )
    source = load_local_dataset(
        tmp_path / "d.csv",
        "train",
        "csv",
        text_fields=("title", "body"),
        label_field="stars",
        data_dir=data_dir,
    )
    # Integer labels sort numerically; the empty title is not joined.
    assert source.label_names == ("1", "2", "10")
    assert list(source) == [
        TextRecord("Good\nline one\nline two", 2),
        TextRecord("plain", 1),
        TextRecord("Bad\nx", 0),
    ]


def test_headerless_csv_with_declared_classes_and_tsv(tmp_path, data_dir):
    _write(tmp_path / "news.csv", '"3","T1","D1"\n"1","T2","D2"\n')
    source = load_local_dataset(
        tmp_path / "news.csv",
        "train",
        "csv",
        header=False,
        text_fields=(1, 2),
        label_field=0,
        classes=("1", "2", "3", "4"),
        data_dir=data_dir,
    )
    assert source.label_names == ("1", "2", "3", "4") and source[0] == TextRecord("T1\nD1", 2)
    _write(tmp_path / "t.tsv", "text\tlabel\nhello there\tpos\nbye\tneg\n")
    tsv = load_local_dataset(
        tmp_path / "t.tsv", "train", "tsv", label_field="label", data_dir=data_dir
    )
    assert tsv.label_names == ("neg", "pos") and tsv[0] == TextRecord("hello there", 1)


def test_jsonl_and_split_patterns(tmp_path, data_dir):
    rows = [{"text": "a b", "y": "spam"}, {"text": "c", "y": "ham"}]
    _write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    _write(tmp_path / "dev.jsonl", json.dumps({"text": "d", "y": "spam"}))
    builder = prepare_local_dataset(
        tmp_path,
        "jsonl",
        splits={"train": "train.jsonl", "validation": ["dev.jsonl"]},
        label_field="y",
        data_dir=data_dir,
    )
    train, dev = load_text_dataset(builder, "train"), load_text_dataset(builder, "validation")
    assert train.label_names == ("ham", "spam")
    assert list(train) == [TextRecord("a b", 1), TextRecord("c", 0)]
    assert list(dev) == [TextRecord("d", 1)]


@pytest.mark.parametrize(
    "fmt, content, kwargs, message",
    [
        ("csv", "text,label\nok,a\nbad,z\n", {"classes": ("a", "b")}, r"d\.csv:3: label 'z'"),
        ("csv", "text,label\nok,a\nshort\n", {}, r"d\.csv:3: row has 1 columns"),
        ("csv", "body,label\nok,a\n", {}, r"d\.csv:1: no column 'text'"),
        ("jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {}, r"d\.jsonl:2: missing"),
        ("jsonl", '{"text": "a", "label": 1}\n{oops\n', {}, r"d\.jsonl:2: invalid JSON"),
        ("jsonl", '{"text": 5, "label": 1}\n', {}, r"d\.jsonl:1: field 'text' is int"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, data_dir, fmt, content, kwargs, message):
    _write(tmp_path / f"d.{fmt}", content)
    with pytest.raises(ValueError, match=message):
        prepare_local_dataset(
            tmp_path / f"d.{fmt}", fmt, label_field="label", data_dir=data_dir, **kwargs
        )


def test_invalid_utf8_is_replaced_or_rejected(tmp_path, data_dir, caplog):
    _write(tmp_path / "bad.txt", b"fine\ncaf\xe9 au lait\nok\n")
    with caplog.at_level(logging.WARNING):
        source = load_local_dataset(tmp_path / "bad.txt", "train", "lines", data_dir=data_dir)
    assert source[1].text == "caf\ufffd au lait"
    assert "bad.txt: 1 line(s) with invalid utf-8 (first at line 2)" in caplog.text
    with pytest.raises(ValueError, match=r"bad\.txt:2: invalid utf-8"):
        prepare_local_dataset(tmp_path / "bad.txt", "lines", errors="strict", data_dir=data_dir)
    _write(tmp_path / "doc" / "a.txt", b"ok\nstill ok\n\xff")
    with pytest.raises(ValueError, match=r"a\.txt:3: invalid utf-8"):
        prepare_local_dataset(tmp_path / "doc", "files", errors="strict", data_dir=data_dir)


def test_class_folders_in_the_aclimdb_layout(tmp_path, data_dir):
    root = tmp_path / "aclImdb"
    for split, label, n in [("train", "pos", 2), ("train", "neg", 3), ("test", "pos", 1)]:
        for i in range(n):
            _write(root / split / label / f"{i}_7.txt", f"{split} {label} {i}")
    _write(root / "test" / "neg" / "0_1.txt", "   ")  # empty: skipped
    for i in range(4):
        _write(root / "train" / "unsup" / f"{i}_0.txt", f"unsup {i}")
    builder = prepare_local_dataset(root, "folders", data_dir=data_dir)
    train = load_text_dataset(builder, "train")
    assert train.label_names == ("neg", "pos")
    assert [r.label for r in train] == [0, 0, 0, 1, 1]  # unsup/ is not part of train
    unsup = load_text_dataset(builder, "unsupervised")
    assert len(unsup) == 4 and {r.label for r in unsup} == {None}
    assert list(load_text_dataset(builder, "test")) == [TextRecord("test pos 0", 1)]
    assert builder.info.metadata["skipped_empty"]["test"] == 1


def test_cache_key_separates_inputs_and_reuses_prepared_data(tmp_path, data_dir):
    path = _write(tmp_path / "c.csv", "text,label\nx,a\ny,b\n")
    first = prepare_local_dataset(path, "csv", label_field="label", data_dir=data_dir)
    again = prepare_local_dataset(path, "csv", label_field="label", data_dir=data_dir)
    assert again.builder_config.name == first.builder_config.name
    assert again.info.features["label"].names == ["a", "b"]
    unlabelled = prepare_local_dataset(path, "csv", data_dir=data_dir)
    assert unlabelled.builder_config.name != first.builder_config.name
    assert list(load_text_dataset(unlabelled, "train"))[0] == TextRecord("x", None)
    _write(path, "text,label\nx,a\ny,b\nz,c\n")
    os.utime(path, ns=(1, 1))
    changed = prepare_local_dataset(path, "csv", label_field="label", data_dir=data_dir)
    assert changed.builder_config.name != first.builder_config.name
    assert load_text_dataset(changed, "train").label_names == ("a", "b", "c")
    assert len(load_text_dataset(first, "train")) == 2  # the old copy is untouched


def test_wikitext_articles_and_trec_labels(tmp_path, data_dir):
    text = (
        " \n = Alpha = \n \n Alpha text . \n \n = = Section = = \n \n more . \n"
        " \n = Beta = \n \n Beta starts . \n = Not a title = \n \n"
    )
    _write(tmp_path / "wiki.train.tokens", text)
    docs = list(local_formats.read_wikitext(tmp_path / "wiki.train.tokens"))
    assert [d.text.split("\n")[0].strip() for d in docs] == ["= Alpha =", "= Beta ="]
    assert "= = Section = =" in docs[0].text and "Not a title" in docs[1].text
    assert docs[1].location.endswith(":10")
    _write(tmp_path / "train_5500.label", b"NUM:dist How far ?\nLOC:city Caf\xe9 where ?\n")
    _write(tmp_path / "TREC_10.label", b"HUM:ind Who ?\nbroken line\n")
    with pytest.raises(ValueError, match=r"TREC_10\.label:2: expected 'COARSE:fine"):
        prepare_local_dataset(tmp_path, "trec", data_dir=data_dir)
    _write(tmp_path / "TREC_10.label", b"HUM:ind Who ?\n")
    trec = prepare_local_dataset(tmp_path, "trec", data_dir=data_dir)
    train = load_text_dataset(trec, "train")
    assert train.label_names == local_formats.TREC_COARSE
    assert list(train) == [TextRecord("How far ?", 4), TextRecord("Café where ?", 5)]
    fine = load_text_dataset(
        prepare_local_dataset(tmp_path, "trec", trec_fine=True, data_dir=data_dir), "test"
    )
    assert fine.label_names == ("HUM:ind", "LOC:city", "NUM:dist") and fine[0].label == 0


def test_unknown_format_and_missing_files(tmp_path, data_dir):
    with pytest.raises(ValueError, match="unknown format"):
        prepare_local_dataset(tmp_path, "xml", data_dir=data_dir)
    with pytest.raises(ValueError, match="no file matches"):
        prepare_local_dataset(tmp_path, "lines", splits={"train": "*.txt"}, data_dir=data_dir)
    with pytest.raises(FileNotFoundError):
        prepare_local_dataset(tmp_path / "nope", "lines", data_dir=data_dir)


# End-to-end on the real copies (../shared/data; skipped when absent).


@pytest.mark.slow
def test_real_trec(shared_dir, data_dir):
    builder = prepare_local_dataset(shared_dir / "data" / "trec", "trec", data_dir=data_dir)
    train, test = load_text_dataset(builder, "train"), load_text_dataset(builder, "test")
    assert (len(train), len(test)) == (5452, 500)
    assert len(train.label_names) == 6 and set(train.labels()) == set(range(6))
    assert train[0] == TextRecord("How did serfdom develop in and then leave Russia ?", 0)


@pytest.mark.slow
def test_real_wikitext2_articles(shared_dir, data_dir):
    builder = prepare_local_dataset(
        shared_dir / "data" / "wikitext-2", "wikitext", data_dir=data_dir
    )
    sizes = {s: len(load_text_dataset(builder, s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 600, "validation": 60, "test": 60}
    valid = load_text_dataset(builder, "validation")
    assert valid[0].text.startswith("= Homarus gammarus =")
    # Whitespace tokens without the per-line <eos> of the published count (217,646).
    n_tokens = sum(len(r.text.split()) for r in valid)
    n_lines = sum(1 for _ in open(shared_dir / "data" / "wikitext-2" / "wiki.valid.tokens"))
    assert n_tokens + n_lines == 217_646


@pytest.mark.slow
def test_real_ag_news_and_lm1b(shared_dir, data_dir):
    news = load_local_dataset(
        shared_dir / "data" / "ag_news" / "test.csv",
        "train",
        "csv",
        header=False,
        text_fields=(1, 2),
        label_field=0,
        data_dir=data_dir,
    )
    assert len(news) == 7600 and news.label_names == ("1", "2", "3", "4")
    assert sorted(__import__("collections").Counter(news.labels()).values()) == [1900] * 4
    lm1b = prepare_local_dataset(
        shared_dir / "data" / "lm1b-sample",
        "lines",
        splits={"dev": "*.dev.tokens", "test": "*.test.tokens"},
        data_dir=data_dir,
    )
    assert len(load_text_dataset(lm1b, "dev")) == 12216
    assert len(load_text_dataset(lm1b, "test")) == 12105


@pytest.mark.slow
def test_real_aclimdb_subset(shared_dir, tmp_path, data_dir):
    # A few members of each folder of the real archive, read without extracting 60 MB.
    want = {"train/pos": 20, "train/neg": 20, "train/unsup": 10, "test/pos": 5, "test/neg": 5}
    root = tmp_path / "aclImdb"
    with tarfile.open(shared_dir / "data" / "imdb" / "aclImdb_v1_without_feat.tar.gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            folder = "/".join(parts[1:3])
            if member.isfile() and len(parts) == 4 and want.get(folder, 0) > 0:
                want[folder] -= 1
                _write(root / folder / parts[3], tar.extractfile(member).read())
                if not any(want.values()):
                    break
    builder = prepare_local_dataset(root, "folders", data_dir=data_dir)
    train = load_text_dataset(builder, "train")
    assert len(train) == 40 and train.label_names == ("neg", "pos")
    assert sorted(train.labels().tolist()) == [0] * 20 + [1] * 20
    assert len(load_text_dataset(builder, "unsupervised")) == 10
    assert len(load_text_dataset(builder, "test")) == 10
    assert all(len(r.text) > 20 for r in train)
