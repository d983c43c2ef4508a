"""Tables of labelled text as users have them: CSV, TSV, JSONL files or a pandas DataFrame.

The reader of `source="local"` with `format` "csv", "tsv" or "jsonl" (and of DataFrames passed
to the Python API). `read_table` returns every column of every row (prediction keeps the
columns it does not use), with the policies a spreadsheet export needs:

* bytes are decoded by `ulmfit_jax.core.data.decode`: a UTF-8 byte-order mark (Excel's "CSV
  UTF-8") is dropped, so the first column is `text`, not `\\ufefftext`; invalid UTF-8 is
  replaced with U+FFFD (`errors="replace"`, counted per row in `Table.replaced_rows`) or raises
  naming the line (`errors="strict"`);
* newlines inside quoted fields are normalised to `\\n` (`\\r\\n` would tokenize differently);
* an empty file, or one with a header and no rows, is an error naming the file;
* a CSV/TSV without a header row (`header=False`, `data.header=False`) names its columns
  "0", "1", ... (AG News' `test.csv`: `text_fields=("1", "2")`, `label_field="0"`).

`read(spec, split)` is the registry's entry (`ulmfit_jax.core.data.readers`): the split's file
(`data.path` itself is `train`; a folder holds `train.csv`, `valid.csv`, `test.csv`, or
`data.splits` names them) as `Documents`, text columns joined by `document_text` (fastai's
`xxfld 1 ... xxfld 2 ...` marks when there are several).

Example:

    table = read_table("reviews.csv")
    texts = [document_text(row, ("title", "review")) for row in table.rows]
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ulmfit_jax.core.data.decode import Decoder, normalise_newlines
from ulmfit_jax.core.data.documents import Document, Documents, field_text, join_fields

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

TABLE_FORMATS = ("csv", "tsv", "jsonl")


@dataclasses.dataclass(frozen=True)
class Table:
    """Rows of named columns.

    Attributes:
        columns: Column names, in file order.
        rows: One mapping per row, column name -> value (`str` for CSV/TSV; any JSON value
            for JSONL; the cell's value for a DataFrame).
        source: Where the table came from, for messages (a path, or "DataFrame").
        replaced_rows: How many rows had invalid UTF-8 replaced by U+FFFD.
    """

    columns: tuple[str, ...]
    rows: list[Mapping[str, Any]]
    source: str
    replaced_rows: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        self.require((name,))
        return [row.get(name) for row in self.rows]

    def require(self, names: Sequence[str], what: str = "column") -> None:
        """A ValueError naming `names` missing from the table and the columns it has."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise ValueError(
                f"{self.source}: no {what} {', '.join(map(repr, missing))}; it has "
                f"{', '.join(map(repr, self.columns))}"
            )


def format_of(path: str | pathlib.Path) -> str:
    """ "csv", "tsv" or "jsonl" from a file name."""
    suffix = pathlib.Path(path).suffix.lower().lstrip(".")
    suffix = {"txt": "tsv", "json": "jsonl", "ndjson": "jsonl"}.get(suffix, suffix)
    if suffix not in TABLE_FORMATS:
        raise ValueError(
            f"{path}: cannot tell the table format from the name; pass one of {TABLE_FORMATS}"
        )
    return suffix


def _decode(path: pathlib.Path, errors: str) -> tuple[str, set[int]]:
    """The file's text and the 1-based lines where invalid UTF-8 was replaced."""
    decode = Decoder(str(path), errors)
    return decode(path.read_bytes()), set(decode.bad_lines)


def _read_delimited(path: pathlib.Path, delimiter: str, errors: str, header: bool = True) -> Table:
    text, bad_lines = _decode(path, errors)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    if header:
        names = next(reader, None)
        if names is None or not any(h.strip() for h in names):
            raise ValueError(f"{path} is empty: a table needs a header row and at least one row")
        names = [h.strip() for h in names]
        rows, replaced, start = [], 0, reader.line_num + 1
    else:  # columns "0", "1", ...: as many as the first row has
        first_row = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), None)
        if first_row is None:
            raise ValueError(f"{path} is empty: a table needs at least one row")
        names = [str(number) for number in range(len(first_row))]
        rows, replaced, start = [], 0, 1
    header = names
    for row in reader:
        first, start = start, reader.line_num + 1
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{first}: row has {len(row)} columns, the header has {len(header)}"
            )
        rows.append({h: normalise_newlines(cell) for h, cell in zip(header, row, strict=True)})
        replaced += any(first <= line < start for line in bad_lines)
    if not rows:
        raise ValueError(f"{path} has a header ({', '.join(header)}) but no rows")
    return Table(tuple(header), rows, str(path), replaced)


def _read_jsonl(path: pathlib.Path, errors: str) -> Table:
    text, bad_lines = _decode(path, errors)
    rows, columns, replaced = [], {}, 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: invalid JSON: {error.msg}") from error
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        rows.append({k: normalise_newlines(v) for k, v in obj.items()})
        columns.update(dict.fromkeys(obj))
        replaced += number in bad_lines
    if not rows:
        raise ValueError(f"{path} is empty: a JSONL table needs at least one object")
    return Table(tuple(columns), rows, str(path), replaced)


def _from_frame(frame: Any) -> Table:
    columns = tuple(str(c) for c in frame.columns)
    rows = [{str(k): normalise_newlines(v) for k, v in r.items()} for r in frame.to_dict("records")]
    if not rows:
        raise ValueError("the DataFrame has no rows")
    return Table(columns, rows, "DataFrame")


def is_frame(obj: Any) -> bool:
    """Whether `obj` looks like a pandas DataFrame (pandas itself is not imported)."""
    return hasattr(obj, "to_dict") and hasattr(obj, "columns") and hasattr(obj, "iloc")


def read_table(
    source: Any, format: str | None = None, *, errors: str = "replace", header: bool = True
) -> Table:
    """Read a CSV/TSV/JSONL file, or take a pandas DataFrame, as a `Table`.

    Args:
        source: A path, or a DataFrame.
        format: "csv", "tsv" or "jsonl"; from the file name when None.
        errors: "replace" invalid UTF-8 (counted in `replaced_rows`) or "strict" (raise).
        header: CSV/TSV files start with a header row; False names the columns "0", "1", ...

    Raises:
        FileNotFoundError: No such file.
        ValueError: Empty or malformed files (the message names the file and line).
    """
    if is_frame(source):
        return _from_frame(source)
    path = pathlib.Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no table at {path}")
    if errors not in ("replace", "strict"):
        raise ValueError(f"data.errors must be 'replace' or 'strict', got {errors!r}")
    format = format or format_of(path)
    if format == "jsonl":
        return _read_jsonl(path, errors)
    if format in ("csv", "tsv"):
        return _read_delimited(path, "," if format == "csv" else "\t", errors, header)
    raise ValueError(f"unknown table format {format!r}: expected one of {TABLE_FORMATS}")


def document_text(row: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    """One document from a row's text columns, fastai-style (`xxfld N` marks for several)."""
    return join_fields([field_text(row.get(field)) for field in text_fields])


def documents_of(table: Table, spec: DataSpec, where: str) -> Documents:
    """The documents of a table: `spec.text_fields` as fields, `spec.label_field` as labels,
    each row kept beside its document."""
    table.require(spec.text_fields, "text column")
    if spec.label_field:
        table.require((spec.label_field,), "label column")
    documents = [
        Document(
            tuple(field_text(row.get(field)) for field in spec.text_fields),
            row.get(spec.label_field) if spec.label_field else None,
            where,
        )
        for row in table.rows
    ]
    return Documents(documents, where, rows=list(table.rows), replaced_rows=table.replaced_rows)


def table_paths(spec: DataSpec) -> dict[str, pathlib.Path]:
    """Split name -> file of a table dataset (a file given as `data.path` is `train`)."""
    root = pathlib.Path(spec.path).expanduser()
    if root.is_file():
        return {"train": root}
    if not root.is_dir():
        raise FileNotFoundError(f"data.path {root} does not exist")
    if spec.splits:
        paths = {}
        for name, pattern in spec.splits:
            matches = sorted(root.glob(pattern))
            if len(matches) != 1:
                raise ValueError(
                    f"data.splits {name}={pattern!r} matches {len(matches)} files under {root}, "
                    "not one"
                )
            paths[name] = matches[0]
        return paths
    ext = "txt" if spec.format == "tsv" and not list(root.glob("*.tsv")) else spec.format
    names = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}
    return {s: root / f"{f}.{ext}" for s, f in names.items() if (root / f"{f}.{ext}").is_file()}


def read(spec: DataSpec, split: str) -> Documents:
    """The documents of one split of a CSV/TSV/JSONL dataset (module docstring).

    Raises:
        FileNotFoundError: no file for `split` (the message lists the files there).
    """
    paths = table_paths(spec)
    if split not in paths:
        root = pathlib.Path(spec.path).expanduser()
        raise FileNotFoundError(
            f"no {split} file in data.path {root}: expected {split}.{spec.format} or "
            f"data.splits='{split}=FILE' (files there: "
            f"{sorted(p.name for p in root.iterdir())})"
        )
    table = read_table(paths[split], spec.format, errors=spec.errors, header=spec.header)
    return documents_of(table, spec, str(paths[split]))
