"""Tables of labelled text as users have them: CSV, TSV, JSONL files or a pandas DataFrame.

`read_table` returns every column of every row (prediction keeps the columns it does not use),
with the policies a spreadsheet export needs:

* a UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped, so the first column is `text`,
  not `\\ufefftext`;
* newlines inside quoted fields are normalised to `\\n` (`\\r\\n` would tokenize differently);
* invalid UTF-8 is replaced with U+FFFD (`errors="replace"`, counted per row in
  `Table.replaced_rows`) or raises naming the line (`errors="strict"`);
* an empty file, or one with a header and no rows, is an error naming the file.

`document_text` joins several text columns as fastai's `tokenize_df` does: each field marked
`xxfld 1 ...`, `xxfld 2 ...` when there are several.

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
from typing import Any

TABLE_FORMATS = ("csv", "tsv", "jsonl")
FIELD_MARK = "xxfld"  # fastai's FLD


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


def _decode(raw: bytes, path: pathlib.Path, errors: str) -> tuple[str, set[int]]:
    """UTF-8 text (BOM dropped) and the 1-based lines where bytes were replaced."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), set()
    except UnicodeDecodeError as error:
        if errors == "strict":
            line = raw.count(b"\n", 0, error.start) + 1
            raise ValueError(
                f"{path}:{line}: invalid UTF-8 at byte {error.start} ({error.reason}); fix the "
                "file or set data.errors='replace'"
            ) from error
    bad_lines = set()
    for number, line in enumerate(raw.split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(number)
    return raw.decode("utf-8", errors="replace"), bad_lines


def _normalise(value: Any) -> Any:
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


def _read_delimited(path: pathlib.Path, delimiter: str, errors: str) -> Table:
    text, bad_lines = _decode(path.read_bytes(), path, errors)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise ValueError(f"{path} is empty: a table needs a header row and at least one row")
    header = [h.strip() for h in header]
    rows, replaced, start = [], 0, reader.line_num + 1
    for row in reader:
        first, start = start, reader.line_num + 1
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{first}: row has {len(row)} columns, the header has {len(header)}"
            )
        rows.append({h: _normalise(cell) for h, cell in zip(header, row, strict=True)})
        replaced += any(first <= line < start for line in bad_lines)
    if not rows:
        raise ValueError(f"{path} has a header ({', '.join(header)}) but no rows")
    return Table(tuple(header), rows, str(path), replaced)


def _read_jsonl(path: pathlib.Path, errors: str) -> Table:
    text, bad_lines = _decode(path.read_bytes(), path, errors)
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
        rows.append({k: _normalise(v) for k, v in obj.items()})
        columns.update(dict.fromkeys(obj))
        replaced += number in bad_lines
    if not rows:
        raise ValueError(f"{path} is empty: a JSONL table needs at least one object")
    return Table(tuple(columns), rows, str(path), replaced)


def _from_frame(frame: Any) -> Table:
    columns = tuple(str(c) for c in frame.columns)
    rows = [{str(k): _normalise(v) for k, v in r.items()} for r in frame.to_dict("records")]
    if not rows:
        raise ValueError("the DataFrame has no rows")
    return Table(columns, rows, "DataFrame")


def is_frame(obj: Any) -> bool:
    """Whether `obj` looks like a pandas DataFrame (pandas itself is not imported)."""
    return hasattr(obj, "to_dict") and hasattr(obj, "columns") and hasattr(obj, "iloc")


def read_table(source: Any, format: str | None = None, *, errors: str = "replace") -> Table:
    """Read a CSV/TSV/JSONL file, or take a pandas DataFrame, as a `Table`.

    Args:
        source: A path, or a DataFrame.
        format: "csv", "tsv" or "jsonl"; from the file name when None.
        errors: "replace" invalid UTF-8 (counted in `replaced_rows`) or "strict" (raise).

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
        return _read_delimited(path, "," if format == "csv" else "\t", errors)
    raise ValueError(f"unknown table format {format!r}: expected one of {TABLE_FORMATS}")


def document_text(row: Mapping[str, Any], text_fields: Sequence[str]) -> str:
    """One document from a row's text columns, fastai-style (`xxfld N` marks for several)."""
    parts = ["" if row.get(f) is None else str(row.get(f)) for f in text_fields]
    if len(parts) == 1:
        return parts[0]
    return " ".join(f"{FIELD_MARK} {i} {p}" for i, p in enumerate(parts, 1))
