"""Bytes to text, one way for every reader: UTF-8, a byte-order mark dropped, bad bytes by policy.

Every local file (tables, plain text, WikiText, TREC, SST trees, review folders) and every TFDS
text feature is decoded here, with the policy of `data.errors`:

* `"replace"` (the default): an invalid byte becomes U+FFFD, so one bad byte never stops a long
  run; the decoder counts the lines where that happened and logs one warning per file;
* `"strict"`: a `ValueError` naming the file, the line and the byte.

A UTF-8 byte-order mark at the start of a file (Excel's "CSV UTF-8") is dropped, so a first
column reads `text`, not `\\ufefftext`. `normalise_newlines` turns `\\r\\n` and lone `\\r` inside a
value into `\\n` (a spreadsheet's line breaks would otherwise tokenize differently).

Example:

    decode = Decoder("reviews.csv", errors="replace")
    text = decode(path.read_bytes())     # str, BOM dropped
    decode.bad_lines                     # [3, 7]: the 1-based lines with replaced bytes
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ERRORS = ("replace", "strict")
BOM = b"\xef\xbb\xbf"


class Decoder:
    """Decodes the bytes of one file, whole or line by line, remembering replaced lines.

    Args:
        where: the file, for messages.
        errors: "replace" or "strict" (module docstring).
        encoding: "utf-8", or "latin-1" for files that are Latin-1 by definition (TREC), where
            no byte is invalid.
    """

    def __init__(self, where: str, errors: str = "replace", encoding: str = "utf-8"):
        if errors not in ERRORS:
            raise ValueError(f"data.errors must be 'replace' or 'strict', got {errors!r}")
        self.where, self.errors, self.encoding = where, errors, encoding
        self.bad_lines: list[int] = []

    def __call__(self, raw: bytes, line: int = 1) -> str:
        """The text of `raw`, which starts at 1-based `line` of the file (a BOM is dropped at
        line 1)."""
        if line == 1 and raw.startswith(BOM) and self.encoding == "utf-8":
            raw = raw[len(BOM) :]
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as error:
            first = line + raw.count(b"\n", 0, error.start)
            if self.errors == "strict":
                raise ValueError(
                    f"{self.where}:{first}: invalid UTF-8 at byte {error.start} ({error.reason}); "
                    "fix the file or set data.errors='replace'"
                ) from error
        for offset, piece in enumerate(raw.split(b"\n")):
            try:
                piece.decode(self.encoding)
            except UnicodeDecodeError:
                self.bad_lines.append(line + offset)
        return raw.decode(self.encoding, errors="replace")

    @property
    def replaced(self) -> int:
        """How many lines had bytes replaced by U+FFFD."""
        return len(self.bad_lines)

    def report(self) -> None:
        """One warning for the file when bytes were replaced."""
        if self.bad_lines:
            logger.warning(
                "%s: %d line(s) with invalid UTF-8 (first at line %d) replaced by U+FFFD",
                self.where,
                len(self.bad_lines),
                self.bad_lines[0],
            )


def read_text(path, errors: str = "replace", encoding: str = "utf-8") -> tuple[str, list[int]]:
    """The text of a whole file and the lines where bytes were replaced (one warning logged)."""
    decode = Decoder(str(path), errors, encoding)
    with open(path, "rb") as file:
        text = decode(file.read())
    decode.report()
    return text, decode.bad_lines


def decode_value(value: Any, *, errors: str = "replace", where: str = "") -> str:
    """A stored text feature (`bytes`, `str` or a 0-d numpy array, as TFDS gives them) as `str`.

    Raises:
        ValueError: with `errors="strict"`, on invalid UTF-8, naming `where`.
        TypeError: the value is not text.
    """
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        try:
            return bytes(value).decode("utf-8", errors=errors)
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{where}: invalid UTF-8 at byte {error.start} ({error.reason})"
            ) from error
    raise TypeError(f"{where}: expected text as bytes or str, got {type(value).__name__}")


def normalise_newlines(value: Any) -> Any:
    """`value` with `\\r\\n` and lone `\\r` as `\\n` when it is a string; else unchanged."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value
