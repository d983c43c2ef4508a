"""IMDb wherever it is, and folders of documents labelled by their folder (the aclImdb layout).

`source="imdb"` reads an aclImdb folder or its `.tar.gz` (extracted once into the cache) from
`data.path`, $ULMFIT_IMDB or the shared copy, else TFDS's prepared `imdb_reviews`. The local
format "folders" reads any folder in that layout:

    ROOT/train/<class>/*.txt     the train split, labelled by folder (`train/unsup` is left out)
    ROOT/test/<class>/*.txt      test
    ROOT/train/unsup/*.txt       "unsupervised": unlabelled documents

Classes are the sorted subfolder names (`neg`, `pos`); files are read in sorted order, one
document each, so record numbers are reproducible. `data.splits` may name other folders.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from ulmfit_jax.core.data.documents import Document, Documents
from ulmfit_jax.core.data.files import split_files
from ulmfit_jax.core.data.lines import read_file
from ulmfit_jax.core.paths import DEFAULT_CACHE, SHARED_DATA

if TYPE_CHECKING:
    from ulmfit_jax.core.data.spec import DataSpec

SPLITS = {"train": "train", "test": "test", "unsupervised": "train/unsup"}
UNLABELLED = ("unsup",)  # subfolders that are not classes

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


def imdb_host_answers(timeout: float = 2.0) -> bool:
    """Whether TFDS's download host for IMDb answers (a 2 s probe)."""
    try:
        with socket.create_connection(IMDB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def imdb_downloadable(timeout: float = 2.0) -> bool:
    """True when TFDS's `imdb_reviews` is prepared, or its download host answers."""
    import tensorflow_datasets as tfds

    try:
        if tfds.builder("imdb_reviews", file_format="array_record").is_prepared():
            return True
    except Exception:  # an unusable TFDS data_dir: treat as not prepared
        pass
    return imdb_host_answers(timeout)


def read_folder(folder: Path, errors: str = "replace") -> tuple[list[Document], tuple[str, ...]]:
    """The documents under `folder/<class>/` labelled by class, or, when it has no class
    folders, its own files unlabelled; and the classes."""
    classes = tuple(
        sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in UNLABELLED)
    )
    if not classes:
        files = sorted(p for p in folder.iterdir() if p.is_file())
        return [read_file(path, errors) for path in files], ()
    documents = [
        read_file(path, errors, label)
        for label in classes
        for path in sorted(p for p in (folder / label).iterdir() if p.is_file())
    ]
    return documents, classes


def read_folders(spec: DataSpec, split: str) -> Documents:
    """One split of a local "folders" dataset (module docstring)."""
    documents: list[Document] = []
    classes: tuple[str, ...] = ()
    for folder in split_files(spec, split, SPLITS):
        found, names = read_folder(folder, spec.errors)
        documents += found
        classes = tuple(sorted({*classes, *names}))
    return Documents(documents, f"{spec.description}[{split}]", classes or None)


def read(spec: DataSpec, split: str) -> Documents:
    """One split of IMDb (`source="imdb"`): the aclImdb folder if there is one, else TFDS's
    prepared `imdb_reviews` (downloaded when it is not prepared and its host answers).

    Raises:
        FileNotFoundError: neither is there (the message says where to put it).
    """
    folder = find_imdb(spec.path or None)
    if folder is not None:
        local = dataclasses.replace(spec, source="local", format="folders", path=str(folder))
        documents = read_folders(local, split)
        documents.where = f"{spec.description}[{split}]"
        return documents
    from ulmfit_jax.core.data import tfds

    try:
        return tfds.read_dataset(
            "imdb_reviews", split, spec, download=imdb_host_answers(), where=spec.description
        )
    except FileNotFoundError as error:
        raise FileNotFoundError(
            "IMDb not found: set data.path or $ULMFIT_IMDB to an aclImdb folder or "
            f"aclImdb_v1.tar.gz, put it at {SHARED_IMDB}, or prepare TFDS's imdb_reviews"
        ) from error
