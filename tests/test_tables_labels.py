"""Tables as users have them, labels of every kind, and the validation split (no training)."""

import json

import numpy as np
import pytest

from ulmfit_jax.core.data.classification import load_classification, load_test
from ulmfit_jax.core.data.labels import LabelEncoder
from ulmfit_jax.core.data.spec import DataSpec
from ulmfit_jax.core.data.tables import document_text, read_table


def write(path, text, mode="w"):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_spreadsheet_exports_read_cleanly(tmp_path):
    # Excel's "CSV UTF-8": a byte-order mark, CRLF line ends, a quoted multi-line field.
    raw = '\ufefftext,label\r\n"line one\r\nline two",pos\r\nplain,neg\r\n'.encode()
    table = read_table(write(tmp_path / "a.csv", raw))
    assert table.columns == ("text", "label")
    assert [r["text"] for r in table.rows] == ["line one\nline two", "plain"]
    tsv = read_table(write(tmp_path / "a.tsv", "text\tlabel\nx\ty\n"))
    assert tsv.rows == [{"text": "x", "label": "y"}]
    jsonl = read_table(write(tmp_path / "a.jsonl", '{"text": "x", "tags": ["a", "b"]}\n\n'))
    assert jsonl.rows[0]["tags"] == ["a", "b"]


def test_invalid_utf8_is_counted_or_refused(tmp_path):
    path = write(tmp_path / "bad.csv", b"text,label\nok,a\nbad \xff byte,b\nalso \xfe,a\n")
    table = read_table(path)
    assert table.replaced_rows == 2 and "\ufffd" in table.rows[1]["text"]
    with pytest.raises(ValueError, match=r"bad.csv:3: invalid UTF-8"):
        read_table(path, errors="strict")


@pytest.mark.parametrize(
    "content,message",
    [("", "is empty"), ("text,label\n", "has a header .* but no rows"), ("a,b\n1,2,3\n", "3 col")],
)
def test_empty_header_only_and_ragged_files_are_named(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_table(write(tmp_path / "t.csv", content))


def test_dataframes_and_fastai_field_marks():
    pd = pytest.importorskip("pandas")
    table = read_table(pd.DataFrame({"title": ["T"], "body": ["B"], "label": [1]}))
    assert table.source == "DataFrame" and table.rows[0]["label"] == 1
    # fastai's tokenize_df with several text columns: "xxfld 1 T xxfld 2 B".
    assert document_text(table.rows[0], ("title", "body")) == "xxfld 1 T xxfld 2 B"
    assert document_text(table.rows[0], ("title",)) == "T"


def test_label_kinds_and_their_errors():
    single = LabelEncoder.fit(["pos", "neg", "pos"])
    assert single.names == ("neg", "pos") and single.encode(["pos"], "v").tolist() == [1]
    assert LabelEncoder.fit(["10", "9", "10"]).names == ("9", "10")  # numeric order
    multi = LabelEncoder.fit(["a;b", "b", "c;a"], delim=";")
    assert multi.kind == "multi" and multi.encode(["c;b"], "v").tolist() == [[0, 1, 1]]
    assert multi.decode(np.array([[0.9, 0.2, 0.6]])) == [["a", "c"]]
    reg = LabelEncoder.fit(["1.5", 2, "-3"], "regression")
    assert reg.encode(["4"], "v").tolist() == [4.0] and reg.n_outputs == 1
    with pytest.raises(ValueError, match=r"never occur in the training data.*\['neg', 'pos'\]"):
        single.encode(["meh"], "test")
    with pytest.raises(ValueError, match="blank label"):
        LabelEncoder.fit(["a", " ", "b"])
    with pytest.raises(ValueError, match="only one class"):
        LabelEncoder.fit(["a", "a"])
    with pytest.raises(ValueError, match="delimiter ';' never occurs"):
        LabelEncoder.fit(["a", "b"], delim=";")
    with pytest.raises(ValueError, match="'high' in row 2 is not a finite number"):
        LabelEncoder.fit(["1", "high"], "regression")
    assert LabelEncoder.from_meta(json.loads(json.dumps(multi.to_meta()))) == multi
    assert (
        "mix numbers (1, 2) and words (neutral)"
        in LabelEncoder.fit(["1", "2", "neutral"]).mixed_names
    )
    assert not single.mixed_names


@pytest.fixture
def folder(tmp_path):
    rows = ["text,label,is_valid"] + [
        f"document {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'},{int(i % 5 == 0)}"
        for i in range(40)
    ]
    write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    write(tmp_path / "test.csv", "text,label,is_valid\nnew good,pos,0\nnew bad,meh,0\n")
    return tmp_path


def spec(folder, **kw):
    return DataSpec(source="local", path=str(folder), format="csv", label_field="label", **kw)


def test_valid_pct_split_is_disjoint_and_reproducible(folder):
    a = load_classification(spec(folder, valid_pct=0.25), seed=3)
    b = load_classification(spec(folder, valid_pct=0.25), seed=3)
    c = load_classification(spec(folder, valid_pct=0.25), seed=4)
    assert len(a.valid) == 10 and len(a.train) == 30
    assert not set(a.train.texts) & set(a.valid.texts)
    assert set(a.train.texts) | set(a.valid.texts) == {
        f"document {i} {'good' if i % 2 else 'bad'}" for i in range(40)
    }
    assert a.valid.texts == b.valid.texts and a.valid.texts != c.valid.texts
    assert a.encoder.names == ("neg", "pos")


def test_valid_column_and_valid_file(folder):
    by_col = load_classification(spec(folder, valid_col="is_valid"))
    assert len(by_col.valid) == 8 and all(
        t.split()[1] in {str(i) for i in range(0, 40, 5)} for t in by_col.valid.texts
    )
    write(folder / "valid.csv", "text,label,is_valid\nv good,pos,0\nv bad,neg,0\n")
    by_file = load_classification(spec(folder, valid_split="valid"))
    assert by_file.valid.texts == ["v good", "v bad"] and len(by_file.train) == 40


def test_bad_inputs_name_the_problem(folder):
    with pytest.raises(ValueError, match=r"no label column 'lable'.*'text', 'label'"):
        load_classification(
            DataSpec(source="local", path=str(folder), format="csv", label_field="lable")
        )
    with pytest.raises(ValueError, match=r"no text column 'review'"):
        load_classification(spec(folder, text_fields=("review",)))
    with pytest.raises(ValueError, match=r"valid_pct must be in \(0, 1\)"):
        spec(folder, valid_pct=1.5)
    with pytest.raises(ValueError, match=r"\['meh'\] never occur in the training data"):
        data = load_classification(spec(folder))
        test = load_test(spec(folder))
        data.encoder.encode(test.raw_labels, test.where)
    write(folder / "valid.csv", "text,label\nx,neutral\n")
    with pytest.raises(ValueError, match=r"valid.csv: label\(s\) \['neutral'\] never occur"):
        load_classification(spec(folder, valid_split="valid"))
