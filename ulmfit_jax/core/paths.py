"""Where things live on disk: the repository, the shared data folder beside it, the cache.

`$ULMFIT_CACHE` moves the cache (default `~/.cache/ulmfit_jax`): tokenized corpora, extracted
archives and downloads go under it.
"""

from __future__ import annotations

import os
from pathlib import Path

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
