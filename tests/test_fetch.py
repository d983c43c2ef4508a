"""Cached, checked downloads: `ulmfit_jax.core.fetch` against a local HTTP server."""

import hashlib
import socket
import sys
import tarfile
import time
import types
import zipfile

import pytest
from http_fixtures import isolated_cache, serving, tgz

from ulmfit_jax.core import fetch as fetch_lib
from ulmfit_jax.core.fetch import DownloadError, cache_path, fetch, fetch_archive

BODY = b"weights " * 1000


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    return isolated_cache(tmp_path, monkeypatch)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cached_files(root):
    downloads = root / "downloads"
    return sorted(p.name for p in downloads.iterdir()) if downloads.is_dir() else []


def test_cache_root_follows_the_environment(cache, monkeypatch):
    assert fetch_lib.cache_root() == cache
    monkeypatch.delenv("ULMFIT_CACHE")
    assert str(fetch_lib.cache_root()).endswith(".cache/ulmfit_jax")


def test_local_path_is_returned_as_is(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    assert fetch(path) == path
    assert fetch(str(path)) == path
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        fetch(tmp_path / "absent.pth")


def test_download_then_cache_hit_without_a_request(cache):
    with serving({"/m/w.pth": BODY}) as server:
        address = f"{server.url}/m/w.pth"
        first = fetch(address, known_hash=sha256(BODY))
        assert first == cache_path(address) and first.parent == cache / "downloads"
        assert first.name.endswith("-w.pth") and first.read_bytes() == BODY
        assert fetch(address, known_hash=sha256(BODY)) == first
        assert fetch(address) == first
        assert server.requests["/m/w.pth"] == 1
    assert cached_files(cache) == [first.name]


def test_corrupted_download_is_rejected_and_removed(cache):
    with serving({"/w.pth": BODY[:-1] + b"!"}) as server:
        with pytest.raises(DownloadError, match="hash"):
            fetch(f"{server.url}/w.pth", known_hash=sha256(BODY))
    assert cached_files(cache) == []


def test_damaged_cached_copy_is_downloaded_again(cache):
    with serving({"/w.pth": BODY}) as server:
        address = f"{server.url}/w.pth"
        path = cache_path(address)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half a fil")
        assert fetch(address, known_hash=sha256(BODY)).read_bytes() == BODY
        assert server.requests["/w.pth"] == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_fails_fast_naming_address_and_cache_path(cache):
    address = f"http://127.0.0.1:{closed_port()}/models/wt103-fwd.tgz"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch(address)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert address in message
    assert str(cache_path(address)) in message
    assert "download it elsewhere and copy it to" in message
    assert isinstance(info.value, OSError)
    assert cached_files(cache) == []


def test_404_is_a_download_error(cache):
    with serving() as server:
        with pytest.raises(DownloadError, match="404"):
            fetch(f"{server.url}/missing.pth")
    assert cached_files(cache) == []


def test_silent_server_times_out(cache, monkeypatch):
    """A server that accepts the connection but never answers: the read timeout ends it."""
    monkeypatch.setattr(fetch_lib, "READ_TIMEOUT_S", 1.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        address = f"http://127.0.0.1:{listener.getsockname()[1]}/w.pth"
        start = time.monotonic()
        with pytest.raises(DownloadError, match="w.pth"):
            fetch(address)
        assert time.monotonic() - start < 10
    assert cached_files(cache) == []


def test_partial_download_never_reaches_the_cache(cache):
    with serving({"/w.pth": BODY}) as server:
        server.truncate.add("/w.pth")
        with pytest.raises(DownloadError):
            fetch(f"{server.url}/w.pth")
    assert cached_files(cache) == []


def test_archive_is_unpacked_once(cache, monkeypatch):
    data = tgz({"top/a.pth": b"aaa", "top/b.pkl": b"bbb"})
    with serving({"/x.tgz": data}) as server:
        address = f"{server.url}/x.tgz"
        a, b = fetch_archive(address, ["top/a.pth", "b.pkl"], known_hash=sha256(data))
        assert (a.read_bytes(), b.read_bytes()) == (b"aaa", b"bbb")
        assert a.parent.parent == cache_path(address).with_name(
            cache_path(address).name + ".unpacked"
        )
        calls = []
        monkeypatch.setattr(tarfile, "open", lambda *a, **k: calls.append(a))
        again = fetch_archive(address, ["top/a.pth", "top/b.pkl"])
        assert again == [a, b] and calls == []
        assert server.requests["/x.tgz"] == 1


def test_archive_member_missing_lists_the_contents(cache, tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(tgz({"top/a.pth": b"aaa"}))
    with pytest.raises(ValueError, match=r"no file is named 'z.pkl'.*top/a.pth"):
        fetch_archive(path, ["z.pkl"])


def test_tar_member_outside_the_folder_is_refused(cache, tmp_path):
    path = tmp_path / "evil.tgz"
    path.write_bytes(tgz({"../escape.txt": b"x"}))
    with pytest.raises(Exception, match="outside|escape"):
        fetch_archive(path, ["escape.txt"])
    assert not (tmp_path / "escape.txt").exists()
    assert [p for p in (cache / "downloads").iterdir() if p.name.endswith(".unpacked")] == []


def test_zip_archive(cache, tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/options.json", "{}")
    (options,) = fetch_archive(path, ["options.json"])
    assert options.read_text() == "{}"


def test_mirror_rewrites_http_addresses(cache, monkeypatch):
    with serving({"/w.pth": BODY}) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url + "/")
        address = "https://s3.amazonaws.com/fast-ai-modelzoo/w.pth"
        assert fetch_lib.mirrored(address) == f"{mirror.url}/w.pth"
        path = fetch(address)
        assert path == cache_path(address) and path.read_bytes() == BODY
        assert mirror.requests["/w.pth"] == 1


def test_mirror_folder(cache, tmp_path, monkeypatch):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "w.pth").write_bytes(BODY)
    monkeypatch.setenv("ULMFIT_MIRROR", str(folder))
    assert fetch("https://example.org/a/w.pth", known_hash=sha256(BODY)).read_bytes() == BODY


def test_mirror_failure_names_both(cache, monkeypatch):
    monkeypatch.setenv("ULMFIT_MIRROR", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(DownloadError, match=r"https://example.org/w.pth \(from the mirror"):
        fetch("https://example.org/w.pth")


def test_hf_address_with_a_test_double(cache, monkeypatch):
    calls = []

    def hf_hub_download(repo_id, filename, revision=None, local_dir=None):
        calls.append((repo_id, filename, revision))
        path = fetch_lib.Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(BODY)
        return str(path)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download)
    )
    address = "hf://owner/repo/sub/w.pth@v1"
    path = fetch(address, known_hash=sha256(BODY))
    assert path == cache_path(address) and path.name.endswith("-w.pth")
    assert path.read_bytes() == BODY
    assert fetch(address) == path
    assert calls == [("owner/repo", "sub/w.pth", "v1")]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_hf_without_huggingface_hub_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="pip install huggingface_hub"):
        fetch("hf://owner/repo/w.pth")


def test_gs_address_with_fsspec_memory_filesystem(cache, monkeypatch):
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        protocol = ("gs",)
        store: dict = {}
        pseudo_dirs = [""]

    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "gs", FakeGCS)
    with fsspec.open("gs://bucket/models/w.pth", "wb") as f:
        f.write(BODY)
    address = "gs://bucket/models/w.pth"
    path = fetch(address, known_hash=sha256(BODY))
    assert path == cache_path(address) and path.read_bytes() == BODY
    with pytest.raises(DownloadError, match="gs://bucket/absent.pth"):
        fetch("gs://bucket/absent.pth")
    assert cached_files(cache) == [path.name]
