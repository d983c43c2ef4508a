"""Where things live on disk: the repository, the shared data folder beside it, the cache.

`$ULMFIT_CACHE` moves the cache (default `~/.cache/ulmfit_jax`): tokenized corpora, extracted
archives and downloads go under it.

`atomic_writer` writes a file so that readers see the old one or the whole new one, never a part.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

REPO_ROOT = Path(__file__).resolve().parents[2]
# `../shared/data` beside a checkout: the datasets this project's machines carry (see README).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def cache_root() -> Path:
    """`$ULMFIT_CACHE`, else `~/.cache/ulmfit_jax` (read at each call, so tests can move it)."""
    return Path(
        os.environ.get("ULMFIT_CACHE") or Path.home() / ".cache" / "ulmfit_jax"
    ).expanduser()


# The cache as it was when the library was imported (the default of arguments).
DEFAULT_CACHE = cache_root()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A binary file that replaces `path` only when the `with` block ends without an error.

    It is a temporary file beside `path` (same file system), renamed over `path` at the end and
    removed if the block raises, so a crash or an interrupt leaves `path` as it was.

    Args:
      path: the file to write.
      fsync: flush the data to disk before the rename (for large caches a crash must not leave
        empty).

    Yields:
      The open temporary file, in "wb" mode.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
