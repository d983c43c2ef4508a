"""IMDb wherever it is: an aclImdb folder, its `.tar.gz`, the shared copy, or TFDS's prepared
one."""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

from ulmfit_jax.core.paths import DEFAULT_CACHE, SHARED_DATA

SHARED_IMDB = SHARED_DATA / "imdb" / "aclImdb_v1_without_feat.tar.gz"

# Where TFDS downloads IMDb from. Probing it first (2 s) spares an offline machine TFDS's
# ~200 s of retries before it gives up.
IMDB_HOST = ("ai.stanford.edu", 443)


def extract_imdb(archive: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Extract an aclImdb .tar.gz once into `cache_dir` and return the aclImdb folder."""
    target = cache_dir / "aclImdb"
    done = cache_dir / ".aclImdb.extracted"
    if done.exists() and done.read_text() == str(archive.stat().st_size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache_dir, filter="data")
    done.write_text(str(archive.stat().st_size))
    return target


def find_imdb(path: str | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path | None:
    """The aclImdb folder from `path`, $ULMFIT_IMDB or ../shared/data/imdb; None if absent."""
    for candidate in (path, os.environ.get("ULMFIT_IMDB"), SHARED_IMDB):
        if not candidate:
            continue
        candidate = Path(candidate).expanduser()
        if candidate.is_dir():
            return candidate / "aclImdb" if (candidate / "aclImdb").is_dir() else candidate
        if candidate.is_file() and candidate.name.endswith((".tar.gz", ".tgz")):
            return extract_imdb(candidate, cache_dir)
    return None


def imdb_downloadable(timeout: float = 2.0) -> bool:
    """True when TFDS's `imdb_reviews` is prepared, or its download host answers."""
    import tensorflow_datasets as tfds

    try:
        if tfds.builder("imdb_reviews", file_format="array_record").is_prepared():
            return True
    except Exception:  # an unusable TFDS data_dir: treat as not prepared
        pass
    try:
        with socket.create_connection(IMDB_HOST, timeout=timeout):
            return True
    except OSError:
        return False
