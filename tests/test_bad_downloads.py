"""Issue 39, cases 20-22: a body that is not what the address promises (an HTML page served
with 200, a truncated archive) never stays in the cache, and the error says so in one line."""

from posixpath import basename

import pytest
from http_fixtures import serving, tgz

from ulmfit_jax.core.fetch import DownloadError, cache_path, fetch, fetch_archive
from ulmfit_jax.weights import pretrained

PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ULMFIT_CACHE", str(root))
    monkeypatch.delenv("ULMFIT_MIRROR", raising=False)
    return root


def downloads(root):
    folder = root / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize(
    "name, body, reason",
    [
        ("w.pth", PAGE, "an HTML page, not a .pth file"),
        ("itos.pkl", b"  <html>oops</html>", "an HTML page, not a .pkl file"),
        ("m.tgz", PAGE, "an HTML page, not a .tgz file"),
        ("m.tgz", tgz({"a.pth": b"x" * 5000})[:-40], "truncated or damaged"),
        ("m.zip", b"PK\x03\x04 not really", "truncated or damaged"),
    ],
)
def test_a_bad_body_is_removed_and_named(cache, name, body, reason):
    with serving({f"/{name}": body}) as server:
        address = f"{server.url}/{name}"
        with pytest.raises(DownloadError) as caught:
            fetch(address)
    message = str(caught.value)
    assert "was bad" in message and reason in message
    assert f"removed {cache_path(address)}" in message and "\n" not in message
    assert downloads(cache) == []


def test_a_fixed_mirror_is_read_again(cache, monkeypatch):
    """The bad body is not cached, so the call after the mirror is fixed downloads the real
    file (before: every later call failed on the cached page)."""
    good = tgz({"a.pth": b"weights"})
    with serving({"/m.tgz": good[: len(good) // 2]}) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url)
        address = "https://example.org/models/m.tgz"
        with pytest.raises(DownloadError, match="from the mirror"):
            fetch_archive(address, ["a.pth"])
        mirror.files["/m.tgz"] = good
        (member,) = fetch_archive(address, ["a.pth"])
        assert member.read_bytes() == b"weights"
        assert mirror.requests["/m.tgz"] == 2


def test_a_page_cached_before_is_downloaded_again(cache):
    with serving({"/w.pth": b"real weights"}) as server:
        address = f"{server.url}/w.pth"
        target = cache_path(address)
        target.parent.mkdir(parents=True)
        target.write_bytes(PAGE)  # what an earlier version left in the cache
        assert fetch(address).read_bytes() == b"real weights"


def test_an_unreadable_cached_archive_is_removed(cache):
    address = "https://example.org/m.tgz"
    target = cache_path(address)
    target.parent.mkdir(parents=True)
    target.write_bytes(tgz({"a.pth": b"x" * 5000})[:-40])  # left by an earlier version
    with pytest.raises(DownloadError, match="removed from the cache") as caught:
        fetch_archive(address, ["a.pth"])
    assert "\n" not in str(caught.value)
    assert not target.exists()


def test_convert_pretrained_on_an_html_archive_is_one_line(cache, monkeypatch, tmp_path, capsys):
    from ulmfit_jax.__main__ import main

    model = pretrained.MODELS["wt103_fwd"]
    with serving({"/" + basename(model.archive): PAGE}) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url)
        code = main(["convert", "--pretrained", "wt103_fwd", "--out", str(tmp_path / "lm")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "an HTML page, not a .tgz file" in err
    assert downloads(cache) == [] and not (tmp_path / "lm" / "export").exists()
