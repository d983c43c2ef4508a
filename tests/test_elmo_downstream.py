"""The task model on frozen ELMo features: it learns, the biLM stays frozen, the scalar mix
trains, the layer cache changes nothing, and the TREC-style program runs end to end."""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from elmo_fixtures import tiny_bilm_params, tiny_config

from elmo_jax.downstream.models import (
    LayerCache,
    SentenceClassifierConfig,
    bilm_layers,
    classifier_logits,
    elmo_task_loss,
    init_classifier,
)
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.weights.allennlp import write_random_weights

WORDS = "the a movie film plot actor scene was is very quite really".split()


def generated(n, seed=0):
    """Sentences labelled 1 when they contain "good", 0 when they contain "bad"."""
    rng = random.Random(seed)
    sentences, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 7))]
        words.insert(rng.randint(0, len(words)), "good" if label else "bad")
        sentences.append(words)
        labels.append(label)
    return sentences, np.array(labels, np.int32)


@pytest.fixture(scope="module")
def bilm():
    return tiny_bilm_params(3)


def test_task_model_trains_and_the_bilm_stays_frozen(bilm):
    bilm_params, bilm_config = bilm
    frozen = jax.tree.map(np.array, bilm_params)
    model = SentenceClassifierConfig(
        num_classes=2, input_dim=bilm_config.output_dim, hidden=8, elmo_dropout=0.0, dropout=0.0
    )
    params = init_classifier(jax.random.key(0), model)
    sentences, labels = generated(32)
    ids = jnp.asarray(batch_to_ids(sentences))
    optimizer = optax.adam(3e-2)

    @jax.jit
    def step(params, opt_state, bilm_params, key):
        def loss_fn(p, b):
            return elmo_task_loss(p, model, b, bilm_config, ids, labels, train=True, rng=key)[0]

        loss, (grads, bilm_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, bilm_params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss, grads, bilm_grads

    opt_state = optimizer.init(params)
    losses = []
    for i in range(40):  # random tiny-biLM features are small (std ~0.03): a slow start
        params, opt_state, loss, grads, bilm_grads = step(
            params, opt_state, bilm_params, jax.random.key(i, impl="rbg")
        )
        losses.append(float(loss))
        if i == 0:
            # Gradients reach the mix weights and gamma, never the biLM.
            assert np.all(np.abs(grads["scalar_mix"]["scalar_parameters"]) > 0)
            assert abs(float(grads["scalar_mix"]["gamma"])) > 0
            assert not any(np.any(np.asarray(g)) for g in jax.tree.leaves(bilm_grads))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert not np.allclose(params["scalar_mix"]["scalar_parameters"], 0.0)
    for a, b in zip(jax.tree.leaves(bilm_params), jax.tree.leaves(frozen), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize(("layers", "hidden"), [((0, 1, 2), 4), ((0,), 0)])
def test_cached_layers_give_the_end_to_end_logits(bilm, layers, hidden):
    bilm_params, bilm_config = bilm
    sentences, _ = generated(5, seed=1)
    model = SentenceClassifierConfig(
        num_classes=3, input_dim=bilm_config.output_dim, layers=layers, hidden=hidden
    )
    params = init_classifier(jax.random.key(1), model)
    cache = LayerCache(bilm_params, bilm_config, sentences, batch_size=4)
    logits = jax.jit(classifier_logits, static_argnums=1)
    cached = logits(params, model, *cache.batch(range(5), layers))
    ids = batch_to_ids(sentences, pad_to=8)  # the cache's bucket length: one compiled shape
    direct = logits(
        params,
        model,
        *jax.jit(bilm_layers, static_argnums=(1, 3))(bilm_params, bilm_config, ids, layers),
    )
    np.testing.assert_allclose(cached, direct, atol=2e-5)
    assert params["scalar_mix"]["scalar_parameters"].shape == (len(layers),)
    assert ("encoder" in params) == bool(hidden)
    with pytest.raises(ValueError, match="layers must be float"):
        classifier_logits(params, model, jnp.zeros((1, 4, 8, model.input_dim)), jnp.ones((1, 8)))


def tiny_bilm(folder):
    folder.mkdir()
    write_random_weights(tiny_config(), folder / "lm_weights.hdf5", folder / "options.json", seed=2)
    return folder


def records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").open()]


def test_trec_program_end_to_end(tmp_path):
    from train.configs import elmo_trec
    from train.elmo_downstream import run

    data = tmp_path / "trec"
    data.mkdir()
    for name, n, seed in (("train_5500.label", 24, 0), ("TREC_10.label", 8, 1)):
        sentences, labels = generated(n, seed)
        pairs = zip(sentences, labels, strict=True)
        lines = [f"{'HUM' if y else 'LOC'}:x {' '.join(s)}" for s, y in pairs]
        (data / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    c = elmo_trec.get_config("tiny")
    c.bilm.dir = str(tiny_bilm(tmp_path / "bilm"))
    c.data.path = str(data)
    c.data.tfds_dir = str(tmp_path / "tfds")
    c.data.valid_pct = 0.25
    metrics = run(c, str(tmp_path / "run"))
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["best_epoch"] in (1, 2)
    assert sum(metrics[f"mix_layer_{k}"] for k in range(3)) == pytest.approx(1.0)
    logged = records(tmp_path / "run")
    assert [r for r in logged if "test/accuracy" in r][-1]["test/accuracy"] == metrics[
        "test/accuracy"
    ]
    assert len([r for r in logged if "valid/accuracy" in r]) == 2  # one per epoch
    c.classifier.layers = (0, 5)
    with pytest.raises(ValueError, match=r"the biLM has layers 0..2"):
        run(c, str(tmp_path / "bad"))


def test_csv_program_best_epoch_export_and_predict(tmp_path, monkeypatch):
    import csv

    from elmo_jax.downstream import train as train_lib
    from elmo_jax.downstream.export import load_classifier
    from elmo_jax.downstream.predict import Predictor
    from train.elmo_downstream import run

    c = csv_classification(tmp_path, raw_text=True)
    # Scripted validation accuracy: epoch 2 is the best, and its parameters are exported.
    scripted = iter([0.5, 0.9, 0.7])
    seen = []
    real = train_lib.evaluate

    def evaluate(params, model, cache, labels, batch_size=64):
        metrics = real(params, model, cache, labels, batch_size)
        if len(cache) == 8 and len(seen) < 3:  # the validation passes
            seen.append(jax.tree.map(np.array, params))
            return dict(metrics, accuracy=next(scripted))
        return metrics

    monkeypatch.setattr(train_lib, "evaluate", evaluate)
    workdir = tmp_path / "run"
    metrics = run(c, str(workdir))
    assert metrics["best_epoch"] == 2 and metrics["valid/accuracy"] == 0.9
    params, model, meta = load_classifier(workdir / "export")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(seen[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert meta["label_names"] == ["neg", "pos"] and meta["layers"] == [0, 1, 2]
    assert meta["tokenizer"] == "spacy" and meta["best"]["epoch"] == 1
    assert meta["test"]["accuracy"] == metrics["test/accuracy"]
    assert meta["bilm"]["options"] == str(tmp_path / "bilm" / "options.json")
    valid = [r for r in records(workdir) if "valid/accuracy" in r]
    assert [r["valid/accuracy"] for r in valid] == [0.5, 0.9, 0.7]

    # Predict: the input's columns, the label and a probability per class.
    (tmp_path / "new.csv").write_text("sentence,note\nvery good film.,a\nbad plot,b\n")
    c.stage = "predict"
    c.predict.input = str(tmp_path / "new.csv")
    out = run(c, str(workdir))
    rows = list(csv.DictReader(open(out["output"], encoding="utf-8")))
    assert [r["note"] for r in rows] == ["a", "b"] and out["count"] == 2
    assert set(rows[0]) == {"sentence", "note", "label", "prob_neg", "prob_pos"}
    predictor = Predictor.load(workdir / "export")
    labels, probs = predictor.predict(["very good film.", "bad plot"])
    assert [r["label"] for r in rows] == labels
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(rows[1]["prob_pos"]), probs[1, 1], atol=1e-6)


def csv_classification(tmp_path, *, raw_text=False):
    """A tiny biLM and train/valid/test CSVs; the ELMo classifier's config for them.

    `raw_text`: an id column and sentences ending in punctuation glued to the last word, read
    with the config's default tokenizer (spaCy); else plain space-separated words, read by the
    whitespace tokenizer, with a checkpoint every 2 steps.
    """
    import csv

    from train.configs import elmo_classify_local

    data = tmp_path / "csv"
    data.mkdir()
    for split, n, seed in (("train", 24, 0), ("valid", 8, 1), ("test", 8, 2)):
        sentences, labels = generated(n, seed)
        with (data / f"{split}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(
                ["id", "sentence", "sentiment"] if raw_text else ["sentence", "sentiment"]
            )
            for i, (s, y) in enumerate(zip(sentences, labels, strict=True)):
                label = "pos" if y else "neg"
                if raw_text:
                    # spaCy splits "good," and "bad." into words and punctuation.
                    writer.writerow([i, " ".join(s) + (", really." if i % 2 else "."), label])
                else:
                    writer.writerow([" ".join(s), label])
    c = elmo_classify_local.get_config("tiny")
    c.bilm.dir = str(tiny_bilm(tmp_path / "bilm"))
    c.data.path = str(data)
    c.data.text_fields = ("sentence",)
    c.data.label_field = "sentiment"
    c.data.valid_split = "valid"
    c.train.epochs = 3
    if not raw_text:
        c.data.tokenizer = "whitespace"
        c.train.checkpoint_every = 2
    return c


class SigtermInEpoch2:
    """A preemption notice one step into the second epoch (the loop saves and exits)."""

    def on_step_end(self, loop, step, metrics):
        if step == loop.steps_per_epoch + 1:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


def assert_same_classifier_run(reference, workdir, expected, got):
    from elmo_jax.downstream.export import load_classifier

    assert got == expected
    histories = [json.loads((w / "valid_history.json").read_text()) for w in (reference, workdir)]
    assert histories[0] == histories[1]
    for a, b in zip(
        jax.tree.leaves(load_classifier(reference / "export")[0]),
        jax.tree.leaves(load_classifier(workdir / "export")[0]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_classifier_resumes_exactly_after_sigterm_or_a_kill_before_validation(
    tmp_path, monkeypatch
):
    """SIGTERM inside epoch 2, or a kill after epoch 2's checkpoint but before its validation,
    then `--resume`: the export, metrics and history of an uninterrupted run, bit for bit."""
    from elmo_jax.downstream import train as train_lib
    from ulmfit_jax.core.runner.run import Preempted

    c = csv_classification(tmp_path)
    reference = tmp_path / "reference"
    expected = train_lib.classify(c, reference)
    assert "test/accuracy" in expected

    workdir = tmp_path / "preempted"
    with pytest.raises(Preempted):
        train_lib.classify(c, workdir, callbacks=[SigtermInEpoch2()])
    assert_same_classifier_run(
        reference, workdir, expected, train_lib.classify(c, workdir, resume=True)
    )

    real, validations = train_lib.evaluate, []

    def killed_at_second_validation(params, model, cache, labels, batch_size=64):
        if len(cache) == 8 and len(labels) == 8:
            validations.append(1)
            if len(validations) == 2:
                raise KeyboardInterrupt("killed")
        return real(params, model, cache, labels, batch_size)

    workdir = tmp_path / "killed"
    monkeypatch.setattr(train_lib, "evaluate", killed_at_second_validation)
    with pytest.raises(KeyboardInterrupt):
        train_lib.classify(c, workdir)
    monkeypatch.setattr(train_lib, "evaluate", real)
    assert_same_classifier_run(
        reference, workdir, expected, train_lib.classify(c, workdir, resume=True)
    )


def test_classifier_refuses_an_unseen_test_label_before_training(tmp_path):
    from elmo_jax.downstream import train as train_lib

    c = csv_classification(tmp_path)
    test_csv = tmp_path / "csv" / "test.csv"
    test_csv.write_text(test_csv.read_text() + "a very odd film,meh\n")
    with pytest.raises(ValueError, match=r"label\(s\) \['meh'\] never occur in the training"):
        train_lib.classify(c, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
