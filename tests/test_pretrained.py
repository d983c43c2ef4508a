"""Published models in one call: the registries, end to end against a local mirror server."""

import io
import json
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from http_fixtures import isolated_cache, serving

import elmo_jax
import ulmfit_jax
from elmo_jax.weights import pretrained as elmo_pretrained
from ulmfit_jax.core.fetch import DownloadError, cache_path
from ulmfit_jax.weights import pretrained

pytest.importorskip("pooch")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    return isolated_cache(tmp_path, monkeypatch)


def basename(address: str) -> str:
    return address.rsplit("/", 1)[-1]


def tgz(members: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, path in members.items():
            archive.add(path, arcname=name)
    return buffer.getvalue()


def assert_trees_equal(a, b):
    assert type(a) is type(b) or isinstance(a, dict)
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for key in a:
            assert_trees_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_registries_name_their_files():
    assert sorted(pretrained.MODELS) == ["wt103_bwd", "wt103_fwd"]
    fwd = pretrained.MODELS["wt103_fwd"]
    assert fwd.archive == "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz"
    assert fwd.weights_member.endswith(".pth") and fwd.vocab_member.endswith(".pkl")
    assert pretrained.MODELS["wt103_bwd"].backwards
    assert sorted(elmo_pretrained.MODELS) == sorted(elmo_jax.PRESETS)
    for model in elmo_pretrained.MODELS.values():
        assert model.options.startswith("https://") and model.options.endswith("_options.json")
        assert model.weights.endswith("_weights.hdf5")
    # No invented checksums: every one is either unset or a full sha256.
    for model in [*pretrained.MODELS.values(), *elmo_pretrained.MODELS.values()]:
        for field in ("sha256", "options_sha256", "weights_sha256"):
            value = getattr(model, field, None)
            assert value is None or len(value) == 64


def test_load_pretrained_is_exported_from_both_packages():
    assert ulmfit_jax.load_pretrained is pretrained.load_pretrained
    assert elmo_jax.load_pretrained is elmo_pretrained.load_pretrained
    assert "load_pretrained" in ulmfit_jax.__all__ and "load_pretrained" in elmo_jax.__all__


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"'wt104'.*wt103_bwd.*wt103_fwd"):
        pretrained.load_pretrained("wt104")
    with pytest.raises(ValueError, match=r"'large'.*medium.*original.*small"):
        elmo_pretrained.load_pretrained("large")


def test_wt103_fwd_end_to_end_through_the_mirror(cache, monkeypatch, fixtures_dir):
    root = fixtures_dir / "fastai"
    model = pretrained.MODELS["wt103_fwd"]
    archive = tgz({model.weights_member: root / "lm.pth", model.vocab_member: root / "lm_itos.pkl"})
    with serving({"/" + basename(model.archive): archive}) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url)
        params, config, vocab = ulmfit_jax.load_pretrained("wt103_fwd")
        again = pretrained.load_pretrained("wt103_fwd")
        assert mirror.requests["/wt103-fwd.tgz"] == 1
    assert cache_path(model.archive).is_file()
    want_params, want_config, want_vocab = ulmfit_jax.load_fastai_lm(
        root / "lm.pth", root / "lm_itos.pkl"
    )
    assert config == want_config and vocab == want_vocab
    assert_trees_equal(params, want_params)
    assert_trees_equal(again[0], want_params)
    expected = np.load(root / "expected.npz")
    logits, _ = ulmfit_jax.lm_apply(params, config, expected["lm_tokens"][:, :10])
    np.testing.assert_allclose(logits, expected["lm_logits"][0], atol=1e-4, rtol=0)


def test_offline_pretrained_names_the_cache_path(cache, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ULMFIT_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as info:
        pretrained.load_pretrained("wt103_bwd")
    archive = pretrained.MODELS["wt103_bwd"].archive
    assert archive in str(info.value) and str(cache_path(archive)) in str(info.value)


def test_loaders_accept_addresses(cache, fixtures_dir):
    root = fixtures_dir / "fastai"
    files = {f"/{n}": (root / n).read_bytes() for n in ["lm.pth", "lm_itos.pkl", "classifier.pth"]}
    with serving(files) as server:
        _, config, vocab = ulmfit_jax.load_fastai_lm(
            f"{server.url}/lm.pth", f"{server.url}/lm_itos.pkl"
        )
        assert config.vocab_size == len(vocab) == 48
        options = json.loads((root / "classifier_config.json").read_text())
        clas = ulmfit_jax.ClassifierConfig(**options)
        ulmfit_jax.load_fastai_classifier(f"{server.url}/classifier.pth", clas)
        assert server.requests["/classifier.pth"] == 1


@pytest.fixture
def elmo_fixture(shared_dir):
    folder = shared_dir / "fixtures" / "elmo_allennlp"
    if not (folder / "options.json").is_file() or not (folder / "lm_weights.hdf5").is_file():
        pytest.skip(f"no AllenNLP ELMo fixture (options.json, lm_weights.hdf5) in {folder}")
    return folder


def test_elmo_end_to_end_through_the_mirror(cache, monkeypatch, elmo_fixture):
    model = elmo_pretrained.MODELS["small"]
    files = {
        "/" + basename(model.options): (elmo_fixture / "options.json").read_bytes(),
        "/" + basename(model.weights): (elmo_fixture / "lm_weights.hdf5").read_bytes(),
    }
    with serving(files) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url)
        params, config = elmo_jax.load_pretrained("small")
        elmo_pretrained.load_pretrained("small")
        assert sorted(mirror.requests.values()) == [1, 1]
    want_params, want_config = elmo_jax.load_allennlp(
        elmo_fixture / "options.json", elmo_fixture / "lm_weights.hdf5"
    )
    assert config == want_config
    assert_trees_equal(params, want_params)
    # load_allennlp itself takes addresses too (served from the cache now: no server).
    params2, _ = elmo_jax.load_allennlp(model.options, model.weights)
    assert_trees_equal(params2, want_params)


# --------------------------------------------------------------------------------------------
# The fine-tuning stage from a registered name, a URL or a converted export
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imdb(tmp_path_factory, fixtures_dir):
    """A tiny aclImdb folder written in the fixture model's own words (w0 ... w43)."""
    words = [w for w in pretrained_itos(fixtures_dir) if w.startswith("w")]
    root = tmp_path_factory.mktemp("aclImdb")
    rng = np.random.default_rng(0)
    for split, label, n in [("train", "pos", 8), ("train", "neg", 8), ("train", "unsup", 8)]:
        folder = root / split / label
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{i}_1.txt").write_text(" ".join(rng.choice(words, 30)))
    for label in ("pos", "neg"):
        (root / "test" / label).mkdir(parents=True)
        (root / "test" / label / "0_1.txt").write_text(" ".join(rng.choice(words, 30)))
    return root


def pretrained_itos(fixtures_dir):
    return ulmfit_jax.read_itos(fixtures_dir / "fastai" / "lm_itos.pkl")


def finetune_config(imdb, scratch, **init):
    from train.configs import finetune_lm_imdb

    c = finetune_lm_imdb.get_config("tiny")
    c.cache_dir, c.data.tfds_dir = str(scratch / "tokens"), str(scratch / "tfds")
    c.data.path = str(imdb)
    c.phases = ((0, 1, 1e-3),)
    for key, value in init.items():
        c.init[key] = value
    return c


def test_finetune_from_a_name_a_url_and_a_conversion_agree(
    imdb, tmp_path, monkeypatch, fixtures_dir
):
    from ulmfit_jax.stages.lm_stage import lm_stage
    from ulmfit_jax.weights.convert import convert_lm
    from ulmfit_jax.weights.export import load_lm

    root = fixtures_dir / "fastai"
    model = pretrained.MODELS["wt103_fwd"]
    files = {f"/{n}": (root / n).read_bytes() for n in ["lm.pth", "lm_itos.pkl"]}
    files["/" + basename(model.archive)] = tgz(
        {model.weights_member: root / "lm.pth", model.vocab_member: root / "lm_itos.pkl"}
    )
    with serving(files) as server:
        monkeypatch.setenv("ULMFIT_MIRROR", server.url)
        by_name = finetune_config(imdb, tmp_path, pretrained="wt103_fwd")
        lm_stage(by_name, tmp_path / "by_name")
        url = dict(fastai_pth=f"{server.url}/lm.pth", fastai_itos=f"{server.url}/lm_itos.pkl")
        lm_stage(finetune_config(imdb, tmp_path, **url), tmp_path / "by_url")
        assert server.requests["/wt103-fwd.tgz"] == 1 and server.requests["/lm.pth"] == 1
    convert_lm(tmp_path / "converted", root / "lm.pth", root / "lm_itos.pkl")
    converted = finetune_config(imdb, tmp_path, workdir=str(tmp_path / "converted"))
    lm_stage(converted, tmp_path / "by_workdir")
    want, config, vocab, _ = load_lm(tmp_path / "by_name")
    assert config.emb_sz == 16 and config.n_layers == 3  # the fixture model's sizes, not tiny's
    for run in ("by_url", "by_workdir"):
        params, other_config, other_vocab, _ = load_lm(tmp_path / run)
        assert other_config == config and other_vocab.itos == vocab.itos
        assert_trees_equal(params, want)


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(backward=True, pretrained="wt103_fwd"),
            "'wt103_fwd' is a forward .* use 'wt103_bwd'",
        ),
        (dict(pretrained="wt103_bwd"), "'wt103_bwd' is a backward .* use 'wt103_fwd'"),
        (dict(pretrained="wt104"), "unknown pretrained language model 'wt104'"),
        (dict(pretrained="wt103_fwd", workdir="runs/lm"), "init.workdir, init.pretrained$"),
        (dict(), "got none"),
    ],
)
def test_finetune_init_is_checked_before_any_work(tmp_path, settings, message):
    from ulmfit_jax.stages.lm_stage import lm_stage

    backward = settings.pop("backward", False)
    # No corpus and no server: the check must come before tokenizing and downloading.
    config = finetune_config(tmp_path / "absent", tmp_path, **settings)
    config.backward = backward
    with pytest.raises(ValueError, match=message):
        lm_stage(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# elmo-jax embed --model NAME
# --------------------------------------------------------------------------------------------


def test_embed_by_model_name_equals_embed_by_files(cache, monkeypatch, tmp_path, elmo_fixture):
    import h5py

    from elmo_jax.__main__ import main

    model = elmo_pretrained.MODELS["small"]
    files = {
        "/" + basename(model.options): (elmo_fixture / "options.json").read_bytes(),
        "/" + basename(model.weights): (elmo_fixture / "lm_weights.hdf5").read_bytes(),
    }
    (tmp_path / "in.txt").write_text("The bank of the river .\nA bank loan .\n")
    options = ["--options", str(elmo_fixture / "options.json")]
    by_files = [*options, "--weights", str(elmo_fixture / "lm_weights.hdf5")]
    assert main(["embed", *by_files, str(tmp_path / "in.txt"), str(tmp_path / "files.hdf5")]) == 0
    with serving(files) as mirror:
        monkeypatch.setenv("ULMFIT_MIRROR", mirror.url)
        by_name = ["--model", "small", str(tmp_path / "in.txt"), str(tmp_path / "name.hdf5")]
        assert main(["embed", *by_name]) == 0
        assert sorted(mirror.requests.values()) == [1, 1]
    with h5py.File(tmp_path / "files.hdf5") as want, h5py.File(tmp_path / "name.hdf5") as got:
        assert sorted(got) == sorted(want) == ["0", "1", "sentence_to_index"]
        for key in ("0", "1"):
            np.testing.assert_array_equal(got[key][...], want[key][...])
        assert got["sentence_to_index"][0] == want["sentence_to_index"][0]


@pytest.mark.parametrize(
    "model_args, message",
    [
        (["--model", "small", "--options", "o.json"], "not both"),
        (["--model", "small", "--weights", "w.hdf5"], "not both"),
        (["--options", "o.json"], "either --model NAME or both --options and --weights"),
        ([], "either --model NAME or both --options and --weights"),
    ],
)
@pytest.mark.parametrize("command", ["embed", "tokens"])
def test_embed_takes_a_model_one_way(tmp_path, capsys, command, model_args, message):
    from elmo_jax.__main__ import main

    with pytest.raises(SystemExit) as info:
        main([command, *model_args, str(tmp_path / "in.txt"), str(tmp_path / "out.hdf5")])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_embed_unknown_model_lists_the_known_ones(tmp_path, capsys):
    from elmo_jax.__main__ import main

    assert main(["embed", "--model", "large", "in.txt", str(tmp_path / "out.hdf5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elmo-jax: error:") and "'large'" in err and "original_5.5B" in err
