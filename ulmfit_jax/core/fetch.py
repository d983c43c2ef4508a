"""Cached, checked downloads of model files, shared by the ULMFiT and ELMo loaders.

`fetch(address)` returns a local path for any of:

* a local path: returned as is (`FileNotFoundError` when there is no such file);
* `http://` / `https://`: downloaded with `pooch` (to a temporary file, moved into the cache only
  when complete and, given `known_hash`, only when its checksum matches);
* `gs://bucket/path`: read with `fsspec` (needs `gcsfs`);
* `hf://owner/repo/path/in/repo[@revision]`: a file of a Hugging Face Hub repository (needs the
  optional `huggingface_hub`: `pip install 'ulmfit-jax[hub]'`).

Files are cached under `cache_root()/downloads/<key>-<basename>`, where `key` is the first 16 hex
digits of the address's sha256: a second call for the same address makes no request. The cache
root is `$ULMFIT_CACHE`, by default `~/.cache/ulmfit_jax`. `fetch_archive` unpacks a `.tgz`,
`.tar.gz`, `.tar` or `.zip` once, into a folder beside the cached file, and returns members.

Machines without direct access:

* `$ULMFIT_MIRROR`: when set, an `http(s)://` address `.../<basename>` is read from
  `$ULMFIT_MIRROR/<basename>` instead (a server, or a local folder, holding the same file names);
  the cache key stays that of the original address.
* Offline, a download fails within seconds with a `DownloadError` (an `OSError`) naming the
  address and the exact cache path; a file downloaded elsewhere and copied to that path is used
  from then on.

A body that is not what the address promises never stays in the cache: an HTML page (a login
or error page served with status 200) for a `.pth`, `.pkl`, `.hdf5` or archive, or an archive
that does not read to its end (truncated, corrupt). It is removed and a `DownloadError` says the
download was bad and what was removed; a bad file already in the cache is removed and
downloaded again.

    >>> path = fetch("https://example.org/weights.pth", known_hash="sha256:...")  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ulmfit_jax.core.paths import cache_root

# Short connect timeout so that an offline machine fails fast; a longer one between bytes.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0

_REMOTE = ("http://", "https://", "gs://", "hf://")
_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")
# Binary formats: a body that starts like a web page is never one of these.
_BINARY_SUFFIXES = (".pth", ".pt", ".pkl", ".hdf5", ".h5", ".npz", ".npy", ".bin", ".gz")
_HTML_STARTS = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<!--")


class DownloadError(OSError):
    """A file could not be downloaded (offline, refused, not found, timed out, bad checksum)."""


def is_remote(address: str | os.PathLike) -> bool:
    """Whether `address` is a URL that `fetch` downloads (not a local path)."""
    return isinstance(address, str) and address.startswith(_REMOTE)


def _basename(address: str) -> str:
    path = address.split("://", 1)[-1].split("?", 1)[0].split("#", 1)[0]
    if address.startswith("hf://"):
        path = path.split("@", 1)[0]
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name or "file"


def cache_path(address: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `fetch` keeps the file downloaded from `address`."""
    key = hashlib.sha256(address.encode()).hexdigest()[:16]
    return Path(cache_dir or cache_root()) / "downloads" / f"{key}-{_basename(address)}"


def mirrored(address: str) -> str:
    """`address` as read under `$ULMFIT_MIRROR` (unchanged when unset or not http(s))."""
    mirror = os.environ.get("ULMFIT_MIRROR")
    if not mirror or not address.startswith(("http://", "https://")):
        return address
    return f"{mirror.rstrip('/')}/{_basename(address)}"


def _error(address: str, source: str, target: Path, reason: str) -> DownloadError:
    via = f" (from the mirror {source})" if source != address else ""
    return DownloadError(
        f"could not download {address}{via}: {reason}. Without a connection, download it "
        f"elsewhere and copy it to {target} (or set ULMFIT_MIRROR to a server or folder that "
        f"holds {_basename(address)})"
    )


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _http(source: str, target: Path, known_hash: str | None, progress: bool) -> None:
    import pooch
    import requests

    downloader = pooch.HTTPDownloader(
        progressbar=progress, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
    )
    # pooch writes to a temporary file in target's folder and moves it in only when the
    # download finished and the hash matched; it does not retry.
    try:
        pooch.retrieve(
            source,
            known_hash=known_hash,
            fname=target.name,
            path=target.parent,
            downloader=downloader,
            progressbar=progress,
        )
    except ValueError as error:
        if "hash" in str(error).lower():
            raise DownloadError(f"{source}: {error}") from error
        raise
    except (requests.RequestException, OSError) as error:
        raise _DownloadFailure(f"{type(error).__name__}: {error}") from error


class _DownloadFailure(Exception):
    """Internal: a transfer failed; `fetch` turns it into a `DownloadError` with the hints."""


def _file_hash(path: Path, known_hash: str) -> tuple[str, str, str]:
    """`(algorithm, expected, found)` for a `"alg:hex"` (or bare sha256 hex) `known_hash`."""
    algorithm, _, expected = known_hash.rpartition(":")
    algorithm = algorithm.lower() or "sha256"
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return algorithm, expected.lower(), digest.hexdigest()


def _hash_matches(path: Path, known_hash: str) -> bool:
    _, expected, found = _file_hash(path, known_hash)
    return found == expected


def _check_hash(path: Path, known_hash: str | None, source: str) -> None:
    if known_hash is None:
        return
    algorithm, expected, found = _file_hash(path, known_hash)
    if found != expected:
        path.unlink(missing_ok=True)
        raise DownloadError(
            f"{source}: {algorithm} checksum {found} does not match the expected "
            f"{expected}; the download was deleted"
        )


def _copy_into(target: Path, write, known_hash: str | None, source: str) -> None:
    """Write `target` through a temporary file in its folder, replaced in only when complete."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        _check_hash(tmp_path, known_hash, source)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _gs(source: str, target: Path, known_hash: str | None) -> None:
    try:
        import fsspec
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("gs:// addresses need fsspec and gcsfs: pip install gcsfs") from error

    def write(tmp: Path) -> None:
        try:
            with fsspec.open(source, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except ImportError as error:
            raise ImportError(f"{source}: reading gs:// needs gcsfs: pip install gcsfs") from error
        except Exception as error:
            raise _DownloadFailure(f"{type(error).__name__}: {error}") from error

    _copy_into(target, write, known_hash, source)


def _hf(source: str, target: Path, known_hash: str | None) -> None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as error:
        raise ImportError(
            f"{source}: hf:// addresses need huggingface_hub: pip install huggingface_hub "
            "(or pip install 'ulmfit-jax[hub]')"
        ) from error
    spec = source[len("hf://") :]
    spec, _, revision = spec.partition("@")
    parts = spec.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{source}: expected hf://owner/repo/path/in/repo[@revision]")
    repo_id, filename = "/".join(parts[:2]), parts[2]

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".hf-") as local_dir:
            try:
                got = hf_hub_download(
                    repo_id=repo_id,
                    filename=filename,
                    revision=revision or None,
                    local_dir=local_dir,
                )
            except Exception as error:
                raise _DownloadFailure(f"{type(error).__name__}: {error}") from error
            shutil.copyfile(got, tmp)

    _copy_into(target, write, known_hash, source)


def _local_source(source: str, target: Path, known_hash: str | None) -> None:
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise _DownloadFailure(f"no file at {path}")
    _copy_into(target, lambda tmp: shutil.copyfile(path, tmp), known_hash, source)


def _suffix(name: str) -> str:
    """The format a file name promises: ".tar.gz" for x.tar.gz, ".pth" for w.pth."""
    name = name.lower()
    return ".tar.gz" if name.endswith(".tar.gz") else os.path.splitext(name)[1]


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith(_HTML_STARTS)


def _unreadable_archive(path: Path, suffix: str) -> str | None:
    """Why the archive at `path` does not read to its end, or None when it does."""
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return f"member {bad!r} is damaged" if bad else None
        if suffix in (".tgz", ".tar.gz"):
            with gzip.open(path, "rb") as stream:  # the whole stream: truncation, CRC
                while stream.read(1 << 20):
                    pass
        with tarfile.open(path) as archive:
            archive.getmembers()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def bad_body(path: Path, name: str) -> str | None:
    """Why the file at `path`, fetched as `name`, is not what that name promises (an HTML page
    for a binary format; an archive that does not read to its end), or None."""
    suffix = _suffix(name)
    if suffix in _BINARY_SUFFIXES + _ARCHIVE_SUFFIXES and _looks_like_html(path):
        return f"it is an HTML page, not a {suffix} file"
    if suffix in _ARCHIVE_SUFFIXES:
        reason = _unreadable_archive(path, suffix)
        if reason:
            return f"the {suffix} archive is truncated or damaged ({reason})"
    return None


def _reject_bad_body(address: str, source: str, target: Path) -> None:
    """Remove a download that is not what `address` promises, and say so."""
    reason = bad_body(target, _basename(address))
    if reason is None:
        return
    target.unlink(missing_ok=True)
    via = f" (from the mirror {source})" if source != address else ""
    raise DownloadError(
        f"the download of {address}{via} was bad: {reason}; removed {target} from the "
        "cache. Check the address (or the mirror's copy) and try again"
    )


def fetch(
    address: str | os.PathLike,
    *,
    known_hash: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> Path:
    """A local path for `address`, downloading it into the cache the first time.

    Args:
      address: a local path, or an `http(s)://`, `gs://` or `hf://` address (module docstring).
      known_hash: `"sha256:<hex>"` (or `"md5:..."`, ...): a download that does not match is
        deleted and raises `DownloadError`. A cached file is checked again on each call.
      cache_dir: the cache root (default `cache_root()`).
      progress: show a progress bar; by default only when stderr is a terminal.

    Returns:
      The local path: `address` itself for a local path, else the cached file.

    Raises:
      FileNotFoundError: a local path that does not exist.
      DownloadError: the download failed (the message names the address, the cache path and
        how to place the file there by hand) or its checksum did not match.
      ImportError: `gs://` without gcsfs, `hf://` without huggingface_hub.
    """
    if not is_remote(address):
        path = Path(address).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no file at {path}")
        return path
    address = str(address)
    target = cache_path(address, cache_dir)
    if target.is_file():
        if known_hash is not None:
            if _hash_matches(target, known_hash):
                return target
        elif not (
            _suffix(target.name) in _BINARY_SUFFIXES + _ARCHIVE_SUFFIXES
            and _looks_like_html(target)
        ):
            return target
        target.unlink()  # a stale or damaged copy (or a cached web page): download it again
    target.parent.mkdir(parents=True, exist_ok=True)
    source = mirrored(address)
    try:
        if source.startswith(("http://", "https://")):
            _http(source, target, known_hash, _show_progress(progress))
        elif source.startswith("gs://"):
            _gs(source, target, known_hash)
        elif source.startswith("hf://"):
            _hf(source, target, known_hash)
        else:  # a mirror folder
            _local_source(source, target, known_hash)
    except _DownloadFailure as error:
        raise _error(address, source, target, str(error)) from error.__cause__
    if known_hash is None:  # a matching checksum already says it is the promised file
        _reject_bad_body(address, source, target)
    return target


def local(address: str | os.PathLike, **fetch_kwargs) -> str | os.PathLike:
    """`fetch(address)` for a remote address; a local path is returned untouched (unchecked),
    so that a loader keeps its own message for a missing file."""
    return fetch(address, **fetch_kwargs) if is_remote(address) else address


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def unpack(archive: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Unpack `archive` once and return the folder holding its contents.

    A cached download is unpacked beside itself (`<file>.unpacked`); a local archive elsewhere
    is unpacked into the cache, keyed by its path, size and modification time. Extraction goes
    to a temporary folder renamed into place when complete; tar members that would land outside
    it (absolute paths, `..`, links out) are refused (`tarfile`'s "data" filter).
    """
    archive = Path(archive)
    if not _is_archive(archive):
        raise ValueError(f"{archive}: not a .tgz, .tar.gz, .tar or .zip archive")
    downloads = Path(cache_dir or cache_root()) / "downloads"
    if archive.parent.resolve() == downloads.resolve():
        dest = archive.with_name(archive.name + ".unpacked")
    else:
        stat = archive.stat()
        key = f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        dest = downloads / f"{digest}-{archive.name}.unpacked"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                root = tmp.resolve()
                for name in z.namelist():
                    if not (tmp / name).resolve().is_relative_to(root):
                        raise ValueError(f"{archive}: member {name!r} would land outside {dest}")
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                t.extractall(tmp, filter="data")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process may have unpacked it meanwhile
                raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        reason = " ".join(str(error).split())  # tarfile lists every method it tried
        if archive.parent.resolve() == downloads.resolve():  # a bad download: not kept
            archive.unlink(missing_ok=True)
            raise DownloadError(
                f"{archive}: the downloaded archive is not readable ({reason}); it was "
                "removed from the cache, so the next call downloads it again"
            ) from error
        raise ValueError(f"{archive}: not a readable archive ({reason})") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _member(folder: Path, name: str) -> Path:
    direct = folder / name
    if direct.is_file():
        return direct
    # Publishers differ in the top folder of an archive: accept a unique file of that name.
    matches = sorted(p for p in folder.rglob(Path(name).name) if p.is_file())
    if len(matches) == 1:
        return matches[0]
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    how = "several files are" if matches else "no file is"
    raise ValueError(f"{how} named {name!r} in the archive unpacked at {folder}: {found[:20]}")


def fetch_archive(
    address: str | os.PathLike,
    member_names: Sequence[str],
    *,
    known_hash: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> list[Path]:
    """Fetch an archive (`fetch`), unpack it once (`unpack`) and return some of its files.

    Args:
      address: as for `fetch`; the archive must end in .tgz, .tar.gz, .tar or .zip.
      member_names: paths inside the archive; a name not found at that path matches the one
        file of that base name, whatever folder holds it.
      known_hash, cache_dir, progress: as for `fetch` (the hash is the archive's).

    Returns:
      The paths of the members, in the order of `member_names`.

    Raises:
      ValueError: the archive is unreadable or lacks a member (the message lists its files).
    """
    path = fetch(address, known_hash=known_hash, cache_dir=cache_dir, progress=progress)
    folder = unpack(path, cache_dir)
    return [_member(folder, name) for name in member_names]
