"""The data layer's document type and its one decoder."""

import pytest

from ulmfit_jax.core.data.decode import Decoder, normalise_newlines
from ulmfit_jax.core.data.documents import Document, Documents, join_fields


def test_one_way_to_join_fields():
    assert join_fields(("only",)) == "only"
    assert join_fields(("T", "B")) == "xxfld 1 T xxfld 2 B"  # fastai's tokenize_df marks
    assert Document(("T", "", "C")).text == "xxfld 1 T xxfld 2  xxfld 3 C"


def test_documents_drop_blank_texts_and_keep_rows_aligned():
    docs = Documents(
        [Document(("a",), "x"), Document((" \n",), "y"), Document(("c",), None)],
        "t.csv",
        ("x", "y"),
        rows=[{"n": 1}, {"n": 2}, {"n": 3}],
        replaced_rows=1,
    )
    kept = docs.without_empty()
    assert kept.texts == ["a", "c"] and kept.raw_labels == ["x", None]
    assert kept.rows == [{"n": 1}, {"n": 3}] and kept.label_names == ("x", "y")
    assert (kept.dropped_empty, kept.replaced_rows) == (1, 1)
    assert kept.subset([1]).texts == ["c"] and kept.without_empty() is kept


def test_decoder_bom_bad_lines_and_strict():
    decode = Decoder("f.txt")
    assert decode(b"\xef\xbb\xbfone\ntw\xff\nthree\n\xfe") == "one\ntw\ufffd\nthree\n\ufffd"
    assert decode.bad_lines == [2, 4] and decode.replaced == 2
    line_by_line = Decoder("f.txt")
    assert line_by_line(b"ok\xff\n", 7) == "ok\ufffd\n" and line_by_line.bad_lines == [7]
    assert Decoder("f.txt")(b"\xef\xbb\xbfmid", 2) == "\ufeffmid"  # a BOM only starts a file
    with pytest.raises(ValueError, match=r"f\.txt:3: invalid UTF-8 at byte 4"):
        Decoder("f.txt", "strict")(b"a\nb\n\xff")
    with pytest.raises(ValueError, match="data.errors must be"):
        Decoder("f.txt", "ignore")
    assert Decoder("t.label", encoding="latin-1")(b"Caf\xe9") == "Café"
    assert normalise_newlines("a\r\nb\rc") == "a\nb\nc" and normalise_newlines(3) == 3
