"""Local files through the data layer's readers (`open_split`): formats, splits, bad input,
and the real copies in ../shared. Files are read directly, never converted."""

import collections
import json
import logging
import tarfile

import pytest

from ulmfit_jax.core.data import trec, wikitext
from ulmfit_jax.core.data.classification import load_classification
from ulmfit_jax.core.data.documents import Document
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.readers import open_split
from ulmfit_jax.core.data.spec import DataSpec


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def local(path, format, **kw):
    return DataSpec(source="local", path=str(path), format=format, **kw)


def test_lines_skip_empty_documents_and_keep_order(tmp_path):
    _write(tmp_path / "corpus.txt", "first line\n\n   \r\nsecond line\r\nthird\n")
    split = open_split(local(tmp_path / "corpus.txt", "lines"), "train")
    assert split.texts == ["first line", "second line", "third"]
    assert split.raw_labels == [None] * 3 and split.label_names is None
    assert split.dropped_empty == 2
    assert split[1].where == f"{tmp_path / 'corpus.txt'}:4"


def test_csv_with_header_quoted_newlines_and_discovered_classes(tmp_path):
    _write(
        tmp_path / "d.csv",
        'id,title,body,stars\n1,Good,"line one\r\nline two",10\n2,,plain,2\n3,Bad,x,1\n',
    )
    split = open_split(local(tmp_path / "d.csv", "csv", text_fields=("title", "body")), "train")
    # Several text fields are joined one way everywhere: fastai's field marks.
    assert split.texts == [
        "xxfld 1 Good xxfld 2 line one\nline two",
        "xxfld 1  xxfld 2 plain",
        "xxfld 1 Bad xxfld 2 x",
    ]
    assert split[0].fields == ("Good", "line one\nline two")
    labelled = open_split(
        local(tmp_path / "d.csv", "csv", text_fields=("body",), label_field="stars"), "train"
    )
    # Integer labels sort numerically.
    assert LabelEncoder.fit(labelled.raw_labels).names == ("1", "2", "10")
    assert labelled.rows[1]["id"] == "2"


def test_headerless_csv_and_tsv(tmp_path):
    _write(tmp_path / "news.csv", '"3","T1","D1"\n"1","T2","D2"\n')
    spec = local(
        tmp_path / "news.csv", "csv", header=False, text_fields=("1", "2"), label_field="0"
    )
    split = open_split(spec, "train")
    assert list(split) == [
        Document(("T1", "D1"), "3", str(tmp_path / "news.csv")),
        Document(("T2", "D2"), "1", str(tmp_path / "news.csv")),
    ]
    _write(tmp_path / "t.tsv", "text\tlabel\nhello there\tpos\nbye\tneg\n")
    tsv = open_split(local(tmp_path / "t.tsv", "tsv", label_field="label"), "train")
    assert tsv.texts == ["hello there", "bye"] and tsv.raw_labels == ["pos", "neg"]


def test_jsonl_and_split_patterns(tmp_path):
    rows = [{"text": "a b", "y": "spam"}, {"text": "c", "y": "ham"}]
    _write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    _write(tmp_path / "dev.jsonl", json.dumps({"text": "d", "y": "spam"}))
    spec = local(
        tmp_path,
        "jsonl",
        splits=(("train", "train.jsonl"), ("validation", "dev*.jsonl")),
        label_field="y",
    )
    train, dev = open_split(spec, "train"), open_split(spec, "validation")
    assert [(d.text, d.label) for d in train] == [("a b", "spam"), ("c", "ham")]
    assert [(d.text, d.label) for d in dev] == [("d", "spam")]
    data = load_classification(spec.__class__(**{**vars(spec), "valid_split": "validation"}))
    assert data.encoder.names == ("ham", "spam") and data.targets(data.valid).tolist() == [1]


@pytest.mark.parametrize(
    "fmt, content, message",
    [
        ("csv", "text,label\nok,a\nshort\n", r"d\.csv:3: row has 1 columns"),
        ("csv", "body,label\nok,a\n", r"d\.csv: no text column 'text'"),
        ("jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"1 document\(s\) without labels"),
        ("jsonl", '{"text": "a", "label": 1}\n{oops\n', r"d\.jsonl:2: invalid JSON"),
        ("jsonl", "[1, 2]\n", r"d\.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, fmt, content, message):
    _write(tmp_path / f"d.{fmt}", content)
    with pytest.raises(ValueError, match=message):
        load_classification(local(tmp_path / f"d.{fmt}", fmt, label_field="label"))


def test_invalid_utf8_is_replaced_or_rejected(tmp_path, caplog):
    _write(tmp_path / "bad.txt", b"\xef\xbb\xbffine\ncaf\xe9 au lait\nok\n")
    with caplog.at_level(logging.WARNING):
        split = open_split(local(tmp_path / "bad.txt", "lines"), "train")
    assert split.texts == ["fine", "caf\ufffd au lait", "ok"]  # the BOM is dropped
    assert "bad.txt: 1 line(s) with invalid UTF-8 (first at line 2)" in caplog.text
    with pytest.raises(ValueError, match=r"bad\.txt:2: invalid UTF-8"):
        open_split(local(tmp_path / "bad.txt", "lines", errors="strict"), "train")
    _write(tmp_path / "doc" / "a.txt", b"ok\nstill ok\n\xff")
    with pytest.raises(ValueError, match=r"a\.txt:3: invalid UTF-8"):
        open_split(local(tmp_path / "doc", "files", errors="strict"), "train")
    assert open_split(local(tmp_path / "doc", "files"), "train").texts == ["ok\nstill ok\n\ufffd"]


def test_class_folders_in_the_aclimdb_layout(tmp_path):
    root = tmp_path / "aclImdb"
    for split, label, n in [("train", "pos", 2), ("train", "neg", 3), ("test", "pos", 1)]:
        for i in range(n):
            _write(root / split / label / f"{i}_7.txt", f"{split} {label} {i}")
    _write(root / "test" / "neg" / "0_1.txt", "   ")  # empty: skipped
    for i in range(4):
        _write(root / "train" / "unsup" / f"{i}_0.txt", f"unsup {i}")
    spec = local(root, "folders")
    train = open_split(spec, "train")
    assert train.label_names == ("neg", "pos")
    assert train.raw_labels == ["neg"] * 3 + ["pos"] * 2  # unsup/ is not part of train
    assert train.texts[0] == "train neg 0"
    unsup = open_split(spec, "unsupervised")
    assert len(unsup) == 4 and set(unsup.raw_labels) == {None}
    test = open_split(spec, "test")
    assert [(d.text, d.label) for d in test] == [("test pos 0", "pos")]
    assert test.dropped_empty == 1
    assert load_classification(spec).encoder.names == ("neg", "pos")


def test_files_are_read_as_they_are_now(tmp_path):
    path = _write(tmp_path / "c.csv", "text,label\nx,a\ny,b\n")
    spec = local(path, "csv", label_field="label")
    assert open_split(spec, "train").raw_labels == ["a", "b"]
    _write(path, "text,label\nx,a\ny,b\nz,c\n")
    assert open_split(spec, "train").raw_labels == ["a", "b", "c"]
    unlabelled = open_split(local(path, "csv"), "train")
    assert list(unlabelled)[0] == Document(("x",), None, str(path))


def test_wikitext_articles_and_trec_labels(tmp_path):
    text = (
        " \n = Alpha = \n \n Alpha text . \n \n = = Section = = \n \n more . \n"
        " \n = Beta = \n \n Beta starts . \n = Not a title = \n \n"
    )
    _write(tmp_path / "wiki.train.tokens", text)
    docs = list(wikitext.read_articles(tmp_path / "wiki.train.tokens"))
    assert [d.text.split("\n")[0].strip() for d in docs] == ["= Alpha =", "= Beta ="]
    assert "= = Section = =" in docs[0].text and "Not a title" in docs[1].text
    assert docs[1].where.endswith(":10")
    assert open_split(local(tmp_path, "wikitext"), "train").texts == [d.text for d in docs]
    _write(tmp_path / "train_5500.label", b"NUM:dist How far ?\nLOC:city Caf\xe9 where ?\n")
    _write(tmp_path / "TREC_10.label", b"HUM:ind Who ?\nbroken line\n")
    with pytest.raises(ValueError, match=r"TREC_10\.label:2: expected 'COARSE:fine"):
        open_split(local(tmp_path, "trec"), "test")
    _write(tmp_path / "TREC_10.label", b"HUM:ind Who ?\n")
    train = open_split(local(tmp_path, "trec"), "train")
    assert train.label_names == trec.COARSE
    assert [(d.text, d.label) for d in train] == [("How far ?", "NUM"), ("Café where ?", "LOC")]
    fine = open_split(local(tmp_path, "trec", label_field="fine"), "train")
    assert fine.label_names is None and fine.raw_labels == ["NUM:dist", "LOC:city"]


def test_unknown_format_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown data.format 'xml'"):
        open_split(local(tmp_path, "xml"), "train")
    with pytest.raises(FileNotFoundError, match="no file matches"):
        open_split(local(tmp_path, "lines", splits=(("train", "*.txt"),)), "train")
    with pytest.raises(ValueError, match=r"has no split 'dev'"):
        open_split(local(tmp_path, "wikitext"), "dev")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_split(local(tmp_path / "nope", "lines"), "train")


# End-to-end on the real copies (../shared/data; skipped when absent).


@pytest.mark.slow
def test_real_trec(shared_dir):
    spec = local(shared_dir / "data" / "trec", "trec")
    train, test = open_split(spec, "train"), open_split(spec, "test")
    assert (len(train), len(test)) == (5452, 500)
    assert set(train.raw_labels) == set(trec.COARSE)
    assert (train[0].text, train[0].label) == (
        "How did serfdom develop in and then leave Russia ?",
        "DESC",
    )


@pytest.mark.slow
def test_real_wikitext2_articles(shared_dir):
    spec = local(shared_dir / "data" / "wikitext-2", "wikitext")
    sizes = {s: len(open_split(spec, s)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 600, "validation": 60, "test": 60}
    valid = open_split(spec, "validation")
    assert valid.texts[0].startswith("= Homarus gammarus =")
    # Whitespace tokens without the per-line <eos> of the published count (217,646).
    n_tokens = sum(len(text.split()) for text in valid.texts)
    n_lines = sum(1 for _ in open(shared_dir / "data" / "wikitext-2" / "wiki.valid.tokens"))
    assert n_tokens + n_lines == 217_646


@pytest.mark.slow
def test_real_ag_news_and_lm1b(shared_dir):
    news = open_split(
        local(
            shared_dir / "data" / "ag_news" / "test.csv",
            "csv",
            header=False,
            text_fields=("1", "2"),
            label_field="0",
        ),
        "train",
    )
    assert len(news) == 7600 and LabelEncoder.fit(news.raw_labels).names == ("1", "2", "3", "4")
    assert sorted(collections.Counter(news.raw_labels).values()) == [1900] * 4
    assert news.texts[0].startswith("xxfld 1 ") and " xxfld 2 " in news.texts[0]
    lm1b = local(
        shared_dir / "data" / "lm1b-sample",
        "lines",
        splits=(("dev", "*.dev.tokens"), ("test", "*.test.tokens")),
    )
    assert len(open_split(lm1b, "dev")) == 12216
    assert len(open_split(lm1b, "test")) == 12105


@pytest.mark.slow
def test_real_aclimdb_subset(shared_dir, tmp_path):
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
    spec = DataSpec(source="imdb", path=str(root))
    train = open_split(spec, "train")
    assert len(train) == 40 and train.label_names == ("neg", "pos")
    assert sorted(train.raw_labels) == ["neg"] * 20 + ["pos"] * 20
    assert train.where == f"{root}[train]"
    assert len(open_split(spec, "unsupervised")) == 10
    assert len(open_split(spec, "test")) == 10
    assert all(len(text) > 20 for text in train.texts)
