"""The biLM training program on a generated corpus: it learns, resumes bit-exactly, and exports
a model that `load_allennlp` reads back exactly."""

import json
import pathlib
import random

import h5py
import jax
import numpy as np
import pytest
from absl import flags

from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.config import read_options
from elmo_jax.model.lstmp import zero_state
from elmo_jax.training import pretrain
from elmo_jax.training import steps as training
from elmo_jax.training.data import BidirectionalBatches, Vocabulary, encode_corpus
from elmo_jax.weights.allennlp import check_weight_file, load_allennlp
from train import elmo
from train.configs import elmo_lm1b
from ulmfit_jax.core.runner.checkpointing import Checkpointer
from ulmfit_jax.core.runner.train_state import create_train_state

STEPS = 10
REPO = pathlib.Path(__file__).resolve().parents[1]


def _sentences(rng, n):
    nouns = "cat dog bird fish horse cow".split()
    verbs = "sees likes chases eats".split()
    return [
        f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)} ." for _ in range(n)
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    (folder / "train.txt").write_text("\n".join(_sentences(rng, 300)) + "\n")
    (folder / "valid.txt").write_text("\n".join(_sentences(rng, 30)) + "\n")
    return folder


def tiny_config(corpus, num_steps=STEPS):
    c = elmo_lm1b.get_config("tiny")
    c.data.train_files = (str(corpus / "train.txt"),)
    c.data.valid_files = (str(corpus / "valid.txt"),)
    c.train.num_steps = num_steps
    c.train.checkpoint_every = 5
    return c


def final_state(config, workdir):
    """The last checkpoint's training state, restored against a fresh template."""
    model = pretrain.model_config(config)
    options = pretrain.train_options(config)
    vocab = Vocabulary.from_file(workdir / "vocab.txt")
    params = training.init_pretraining_params(jax.random.key(config.seed), model, len(vocab))
    template = create_train_state(
        params,
        training.make_bilm_optimizer(options),
        seed=config.seed,
        lstm_state=zero_state(model, config.train.batch_size),
        key_impl=training.KEY_IMPL,
    )
    checkpointer = Checkpointer(workdir / "checkpoints")
    state, _ = checkpointer.restore(template)
    checkpointer.close()
    return state, params, model, vocab


@pytest.fixture(scope="module")
def straight_run(corpus, tmp_path_factory):
    """One uninterrupted run, through the absl command line (flags parsed in-process)."""
    workdir = tmp_path_factory.mktemp("straight")
    argv = [
        "elmo",
        f"--config={REPO / 'train/configs/elmo_lm1b.py'}:tiny",
        f"--workdir={workdir}",
        f"--config.data.train_files=('{corpus / 'train.txt'}',)",
        f"--config.data.valid_files=('{corpus / 'valid.txt'}',)",
        f"--config.train.num_steps={STEPS}",
        "--config.train.checkpoint_every=5",
    ]
    flag_values = flags.FlagValues()
    elmo.define_flags(flag_values, argv)
    flag_values(argv)
    elmo.main(["elmo"], flag_values)
    return workdir


def test_training_lowers_the_validation_perplexity(corpus, straight_run):
    config = tiny_config(corpus)
    state, initial, model, vocab = final_state(config, straight_run)
    assert int(state.step) == STEPS
    valid = [line.split() for line in (corpus / "valid.txt").read_text().splitlines()]

    def perplexity(params):
        stream = BidirectionalBatches(
            encode_corpus(valid, vocab), batch_size=2, unroll_steps=8, shuffle=False, repeat=False
        )
        return training.evaluate(params, model, stream)["perplexity"]

    records = [json.loads(line) for line in (straight_run / "metrics.jsonl").open()]
    reported = [r for r in records if "valid/perplexity" in r][-1]["valid/perplexity"]
    assert reported == pytest.approx(perplexity(state.params), rel=1e-6)
    assert reported < 0.8 * perplexity(initial)
    assert {"train/loss", "train/forward_loss", "train/grad_norm"} <= set(records[0])


def test_resume_is_bit_exact(corpus, straight_run, tmp_path):
    pretrain.pretrain(tiny_config(corpus, STEPS // 2), tmp_path)
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain.pretrain(tiny_config(corpus), tmp_path)
    # Training longer changes the recorded config: refused unless accepted.
    with pytest.raises(ValueError, match=rf"train\.num_steps: {STEPS // 2} -> {STEPS}"):
        pretrain.pretrain(tiny_config(corpus), tmp_path, resume=True)
    pretrain.pretrain(tiny_config(corpus), tmp_path, resume=True, resume_changed=True)
    resumed = final_state(tiny_config(corpus), tmp_path)[0]
    straight = final_state(tiny_config(corpus), straight_run)[0]
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_export_round_trips_exactly(corpus, straight_run):
    state, _, model, vocab = final_state(tiny_config(corpus), straight_run)
    export = straight_run / "export"
    assert check_weight_file(model, export / "lm_weights.hdf5") == []  # no softmax inside
    assert read_options(export / "options.json") == model
    params, config = load_allennlp(export / "options.json", export / "lm_weights.hdf5")
    trained = state.params["bilm"]
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trained), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids = batch_to_ids([["the", "cat", "sees", "a", "zebra"], ["dog", "."]])
    apply = jax.jit(bilm_apply, static_argnums=1)
    loaded, ours = apply(params, config, ids)[0], apply(trained, model, ids)[0]
    for a, b in zip(loaded, ours, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert Vocabulary.from_file(export / "vocab.txt").words == vocab.words
    softmax = training.load_softmax(export / "softmax_weights.hdf5")
    np.testing.assert_array_equal(softmax["w"], state.params["softmax"]["w"])
    with h5py.File(export / "lm_weights.hdf5") as f:  # bilm-tf's training table: 261 rows
        assert f["char_embed"].shape == (261, model.char_embed_dim)


def test_bad_configs_fail_clearly(corpus, tmp_path):
    c = tiny_config(corpus)
    c.train.n_negative_samples = 100
    with pytest.raises(ValueError, match=r"n_negative_samples \(100\) exceeds the vocabulary"):
        pretrain.pretrain(c, tmp_path / "a")
    c = tiny_config(corpus)
    c.data.train_files = (str(tmp_path / "missing*.txt"),)
    with pytest.raises(ValueError, match="no file matches"):
        pretrain.pretrain(c, tmp_path / "b")
    c = tiny_config(corpus)
    c.vocab.file = str(corpus / "train.txt")  # not a vocabulary: no special tokens
    with pytest.raises(ValueError, match="special tokens"):
        pretrain.pretrain(c, tmp_path / "c")


def _new_text(folder, seed):
    """Another "domain": new animals and verbs, some of the old words."""
    rng = random.Random(seed)
    nouns = "zebra lion cat tiger dog".split()
    verbs = "hunts sees follows".split()
    lines = [
        f"a {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)} ." for _ in range(200)
    ]
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(lines[:170]) + "\n")
    (folder / "valid.txt").write_text("\n".join(lines[170:]) + "\n")
    return folder


@pytest.mark.parametrize("softmax", [True, False])
def test_restart_adapts_an_exported_bilm_to_new_text(straight_run, tmp_path, monkeypatch, softmax):
    export = straight_run / "export"
    text = _new_text(tmp_path / "text", seed=1)
    c = tiny_config(text, num_steps=8 if softmax else 40)  # a fresh softmax starts uniform
    if softmax:  # the whole export: biLM, softmax and its vocabulary
        c.init.dir = str(export)
    else:  # a released model's two files: a fresh softmax over the new text's words
        c.init.options = str(export / "options.json")
        c.init.weights = str(export / "lm_weights.hdf5")
    c.model.dim = 999  # ignored: the shape comes from the options file
    seen = {}
    real_fit = pretrain.fit

    def fit(run, *, state, **kwargs):
        seen["before"] = jax.device_get(state.params)
        return real_fit(run, state=state, **kwargs)

    monkeypatch.setattr(pretrain, "fit", fit)
    workdir = tmp_path / "adapt"
    metrics = pretrain.pretrain(c, workdir)
    file_params, file_config = load_allennlp(export / "options.json", export / "lm_weights.hdf5")
    before_leaves, file_leaves = (
        jax.tree.leaves(seen["before"]["bilm"]),
        jax.tree.leaves(file_params),
    )
    for a, b in zip(before_leaves, file_leaves, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    old_vocab = Vocabulary.from_file(export / "vocab.txt")
    new_vocab = Vocabulary.from_file(workdir / "export" / "vocab.txt")
    if softmax:
        restored = training.load_softmax(export / "softmax_weights.hdf5")
        np.testing.assert_array_equal(seen["before"]["softmax"]["w"], restored["w"])
        assert new_vocab.words == old_vocab.words
    else:
        assert "zebra" in new_vocab.words and "zebra" not in old_vocab.words
        assert seen["before"]["softmax"]["w"].shape == (len(new_vocab), file_config.projection_dim)
    # Trained on the new text, exported in the released layout, and better on it.
    params, config = load_allennlp(
        workdir / "export" / "options.json", workdir / "export" / "lm_weights.hdf5"
    )
    assert config == file_config
    changed = [
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), file_leaves, strict=True)
    ]
    assert any(changed)
    assert metrics["perplexity"] < metrics["init_perplexity"]
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    before = [r for r in logged if "init_valid/perplexity" in r]
    assert (
        before[0]["step"] == 0 and before[0]["init_valid/perplexity"] == metrics["init_perplexity"]
    )
    assert json.loads((workdir / "export" / "options.json").read_text())["restarted_from"] == (
        c.init.weights or str(export / "lm_weights.hdf5")
    )
