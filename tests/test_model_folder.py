"""Model folders: orbax export -> folder -> the same logits bit for bit, and the one-line errors."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from model_fixtures import assert_trees_equal, write_classifier_export

from ulmfit_jax.core import model_folder
from ulmfit_jax.inference.predictor import Predictor
from ulmfit_jax.models import awd_lstm
from ulmfit_jax.weights.export import export_params, load_lm
from ulmfit_jax.weights.folder import export_to_folder, load_language_model

VOCAB = ["xxunk", "xxpad", "xxbos", "xxeos"] + [f"w{i}" for i in range(36)]
DOCS = [np.array([2, 5, 9, 11, 30], np.int32), np.array([2, 7], np.int32), np.arange(2, 40)]


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    """A classify stage's export, as the stage writes it (random weights, real metadata)."""
    return write_classifier_export(
        tmp_path_factory.mktemp("clf"),
        VOCAB,
        ["neg", "neu", "pos"],
        best={"epoch": 1, "step": 20, "value": 0.75, "monitor": "accuracy"},
        valid={"valid/accuracy": 0.75, "valid/loss": 0.61},
    )


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lm")
    config = awd_lstm.AWDLSTMConfig(vocab_size=len(VOCAB), emb_sz=8, n_hid=12, n_layers=2)
    params = awd_lstm.init_lm_params(jax.random.key(1), config)
    meta = {"stage": "finetune_lm", "vocab": VOCAB, "model": dataclasses.asdict(config)}
    export_params(workdir, params, dict(meta, backward=True, valid={"perplexity": 80.1}))
    return workdir


def test_classifier_export_to_folder_gives_the_same_outputs_bit_for_bit(classifier_run, tmp_path):
    folder = export_to_folder(classifier_run, tmp_path / "clf")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    before = Predictor.from_workdir(classifier_run)
    after = Predictor.from_pretrained(folder)
    assert_trees_equal(after.params, before.params)
    np.testing.assert_array_equal(after.predict_ids(DOCS), before.predict_ids(DOCS))
    assert after.label_names == ["neg", "neu", "pos"]
    card = (folder / "README.md").read_text()
    assert "text classifier" in card and "accuracy 0.7500" in card
    assert 'Predictor.from_pretrained("clf")' in card


def test_predictor_save_pretrained_round_trip(classifier_run, tmp_path):
    predictor = Predictor.from_workdir(classifier_run)
    predictor.save_pretrained(tmp_path / "again")
    again = Predictor.from_pretrained(tmp_path / "again")
    np.testing.assert_array_equal(again.predict_ids(DOCS), predictor.predict_ids(DOCS))
    assert again.encoder == predictor.encoder


def test_language_model_folder_equals_load_lm(lm_run, tmp_path):
    folder = export_to_folder(lm_run, tmp_path / "lm")
    params, config, vocab, meta = load_language_model(folder)
    want_params, want_config, want_vocab, _ = load_lm(lm_run)
    assert config == want_config and vocab.itos == want_vocab.itos and meta["backward"] is True
    assert_trees_equal(params, want_params)
    tokens = np.array([[2, 5, 9, 11]])
    np.testing.assert_array_equal(
        awd_lstm.lm_apply(params, config, tokens)[0],
        awd_lstm.lm_apply(want_params, want_config, tokens)[0],
    )
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["library"] == "ulmfit-jax" and config_json["kind"] == "language_model"
    assert config_json["tokenizer"] == {"name": "fastai", "lang": "en"}
    with pytest.raises(ValueError, match="holds a language_model, not a classifier"):
        Predictor.from_pretrained(folder)


@pytest.fixture
def folder(classifier_run, tmp_path):
    return export_to_folder(classifier_run, tmp_path / "model")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors"])
def test_a_folder_missing_a_file_names_it(folder, missing):
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{missing} is missing"):
        Predictor.from_pretrained(folder)


def test_a_newer_format_asks_for_an_upgrade(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, format=99)))
    with pytest.raises(ValueError, match="upgrade ulmfit-jax"):
        Predictor.from_pretrained(folder)


def test_tensors_that_disagree_with_the_config_name_the_tensor(folder):
    config = json.loads((folder / "config.json").read_text())
    config["model"]["emb_sz"] = 10
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"encoder.embedding has shape \(40, 8\)"):
        Predictor.from_pretrained(folder)


def test_a_folder_of_another_library_is_refused(folder):
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not 'ulmfit-jax'"):
        Predictor.from_pretrained(folder)


def test_never_overwrites_what_is_not_ours(classifier_run, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="is not a ulmfit-jax model folder"):
        export_to_folder(classifier_run, target)
    assert (target / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_replaces_its_own_folder_only_when_asked(classifier_run, folder):
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        export_to_folder(classifier_run, folder)
    export_to_folder(classifier_run, folder, overwrite=True)
    assert Predictor.from_pretrained(folder).label_names == ["neg", "neu", "pos"]


def test_flatten_round_trip_and_dotted_names():
    tree = {"a": {"b": np.ones(2), "c": {"d": np.zeros(1)}}, "e": np.arange(3)}
    assert_trees_equal(model_folder.unflatten(model_folder.flatten(tree)), tree)
    with pytest.raises(ValueError, match="contains '.'"):
        model_folder.flatten({"a.b": np.ones(1)})


# --- the Hub, both ways, against a stand-in on 127.0.0.1 -------------------------------------

HUB_CHILD = """
import json, sys
import numpy as np
from ulmfit_jax.core.model_folder import push_to_hub
from ulmfit_jax.inference.predictor import Predictor
folder, docs = sys.argv[1], [np.asarray(d, np.int32) for d in json.loads(sys.argv[2])]
address = push_to_hub(folder, "user/clf", commit_message="first")
pulled = Predictor.from_pretrained(address)
print(json.dumps({"address": address, "probs": pulled.predict_ids(docs).tolist()}))
"""


def test_push_to_hub_then_from_pretrained_gives_the_same_outputs(classifier_run, tmp_path):
    pytest.importorskip("huggingface_hub")
    import os
    import subprocess
    import sys

    from hub_standin import HubStandIn

    folder = export_to_folder(classifier_run, tmp_path / "clf")
    want = Predictor.from_pretrained(folder).predict_ids(DOCS)
    with HubStandIn() as hub:
        env = dict(
            os.environ,
            HF_ENDPOINT=hub.url,
            HF_HOME=str(tmp_path / "hf_home"),
            HF_TOKEN="hf_standin",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
            PYTHONPATH=os.pathsep.join([str(tmp_path.parent), *sys.path]),
        )
        docs = json.dumps([d.tolist() for d in DOCS])
        result = subprocess.run(
            [sys.executable, "-c", HUB_CHILD, str(folder), docs],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["address"] == "hf://user/clf"
        assert sorted(hub.repos["user/clf"]["main"]) == sorted(p.name for p in folder.iterdir())
        assert hub.repos["user/clf"]["main"]["config.json"] == (folder / "config.json").read_bytes()
    np.testing.assert_array_equal(np.asarray(out["probs"], np.float32), want)
    # The download landed in the Hugging Face cache, shared with other libraries.
    assert list((tmp_path / "hf_home" / "hub").glob("models--user--clf/snapshots/*/config.json"))
