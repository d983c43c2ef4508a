"""`python -m ulmfit_jax convert`: fastai weights written once as exports, read without torch.

The converter runs in a subprocess where `import torch` fails; what it writes is loaded here
through `load_lm` and `Predictor.from_workdir` and compared bit for bit with the direct loaders.
"""

import json
import textwrap

import numpy as np
import pytest
from conftest import run_python
from http_fixtures import isolated_cache, serving
from test_pretrained import assert_trees_equal, tgz

import ulmfit_jax
from ulmfit_jax.__main__ import main
from ulmfit_jax.weights import pretrained
from ulmfit_jax.weights.export import CONVERTED_LM, load_lm

pytest.importorskip("pooch")

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    from ulmfit_jax.__main__ import main
    status = [main(argv) for argv in json.loads(sys.argv[1])]
    print(json.dumps({"status": status, "torch": sys.modules.get("torch") is not None}))
    """
)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    return isolated_cache(tmp_path, monkeypatch)


@pytest.fixture
def fastai_dir(fixtures_dir):
    return fixtures_dir / "fastai"


def clas_config(fastai_dir):
    fields = json.loads((fastai_dir / "classifier_config.json").read_text())
    return ulmfit_jax.ClassifierConfig(**fields)


def clas_docs(fastai_dir):
    expected = np.load(fastai_dir / "expected.npz")
    ends = np.cumsum(expected["clas_doc_lengths"])
    return [d.tolist() for d in np.split(expected["clas_docs"], ends[:-1])]


def test_converted_exports_load_without_torch_bit_for_bit(tmp_path, fastai_dir):
    model = pretrained.MODELS["wt103_bwd"]
    archive = tgz(
        {
            model.weights_member: fastai_dir / "lm.pth",
            model.vocab_member: fastai_dir / "lm_itos.pkl",
        }
    )
    files = {f"/{n}": (fastai_dir / n).read_bytes() for n in ["lm.pth", "lm_itos.pkl"]}
    files["/" + model.archive.rsplit("/", 1)[-1]] = archive
    lm_dir, clas_dir, bwd_dir = tmp_path / "lm", tmp_path / "clas", tmp_path / "bwd"
    with serving(files) as server:
        commands = [
            ["convert", "--pth", f"{server.url}/lm.pth", "--itos", f"{server.url}/lm_itos.pkl"]
            + ["--out", str(lm_dir)],
            ["convert", "--classifier", str(fastai_dir / "classifier_config.json")]
            + ["--pth", str(fastai_dir / "classifier.pth"), "--itos"]
            + [str(fastai_dir / "lm_itos.pkl"), "--labels", "a,b,c", "--out", str(clas_dir)],
            ["convert", "--pretrained", "wt103_bwd", "--out", str(bwd_dir)],
        ]
        report = run_python(CHILD, json.dumps(commands), ULMFIT_MIRROR=server.url)
        assert server.requests["/lm.pth"] == 1 and server.requests["/wt103-bwd.tgz"] == 1
    assert report == {"status": [0, 0, 0], "torch": False}

    # The language model: same parameters, config, vocabulary and logits as load_fastai_lm.
    want_params, want_config, want_vocab = ulmfit_jax.load_fastai_lm(
        fastai_dir / "lm.pth", fastai_dir / "lm_itos.pkl"
    )
    tokens = np.load(fastai_dir / "expected.npz")["lm_tokens"]
    want_logits, _ = ulmfit_jax.lm_apply(want_params, want_config, tokens)
    for folder, backward in [(lm_dir, False), (bwd_dir, True)]:
        params, config, vocab, meta = load_lm(folder)
        assert config == want_config and list(vocab.itos) == want_vocab
        assert meta["stage"] == CONVERTED_LM and meta["backward"] is backward
        assert_trees_equal(params, want_params)
        logits, _ = ulmfit_jax.lm_apply(params, config, tokens)
        np.testing.assert_array_equal(np.asarray(logits), np.asarray(want_logits))
    assert meta["source"]["pretrained"] == "wt103_bwd"
    assert meta["source"]["archive"] == model.archive

    # The classifier: Predictor.from_workdir gives the direct loader's logits and predictions.
    config = clas_config(fastai_dir)
    want = ulmfit_jax.load_fastai_classifier(fastai_dir / "classifier.pth", config)
    predictor = ulmfit_jax.Predictor.from_workdir(clas_dir)
    assert predictor.config == config and predictor.label_names == ["a", "b", "c"]
    assert not predictor.backward and list(predictor.vocab.itos) == want_vocab
    assert_trees_equal(predictor.params, want)
    docs = clas_docs(fastai_dir)
    logits = ulmfit_jax.classifier_apply(predictor.params, predictor.config, docs)
    np.testing.assert_array_equal(
        np.asarray(logits), np.asarray(ulmfit_jax.classifier_apply(want, config, docs))
    )
    direct = ulmfit_jax.Predictor(want, config, ulmfit_jax.Vocab(want_vocab))
    ids = [np.asarray(d, np.int32) for d in docs]
    np.testing.assert_array_equal(predictor.predict_ids(ids), direct.predict_ids(ids))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pretrained", "wt103_fwd", "--pth", "x.pth"], "give it alone"),
        (["--pretrained", "wt103_fwd", "--backward"], "give it alone"),
        (["--pth", "x.pth"], "either --pretrained NAME, or --pth and --itos"),
        (["--pth", "x.pth", "--itos", "x.pkl", "--labels", "a,b"], "are for a --classifier"),
    ],
)
def test_convert_refuses_mixed_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["convert", *argv, "--out", str(tmp_path / "out")])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_convert_reports_bad_input_in_one_line(tmp_path, capsys, fastai_dir):
    out = str(tmp_path / "out")
    assert main(["convert", "--pretrained", "wt104", "--out", out]) == 2
    assert "'wt104'" in capsys.readouterr().err
    lm = ["--pth", str(fastai_dir / "lm.pth"), "--itos", str(fastai_dir / "lm_itos.pkl")]
    config = str(fastai_dir / "classifier_config.json")
    assert main(["convert", "--classifier", config, *lm, "--labels", "a,b", "--out", out]) == 2
    assert "2 label names for a classifier of 3 classes" in capsys.readouterr().err
    # An LM's .pth given as a classifier: the loader's own message.
    assert main(["convert", "--classifier", config, *lm, "--out", out]) == 2
    assert "0.module.encoder.weight" in capsys.readouterr().err
    assert main(["convert", *lm, "--out", out]) == 0
    assert main(["convert", *lm, "--out", out]) == 2  # never over an existing export
    assert "already exists" in capsys.readouterr().err
