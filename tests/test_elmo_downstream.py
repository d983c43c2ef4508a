"""The task model on frozen ELMo features: it learns, the biLM stays frozen, the scalar mix
trains, the layer cache changes nothing, and the TREC-style program runs end to end."""

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from elmo_fixtures import tiny_config

from elmo_jax.downstream.models import (
    ClassifierConfig,
    LayerCache,
    bilm_layers,
    classifier_logits,
    elmo_task_loss,
    init_classifier,
)
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.init import init_bilm
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
    config = tiny_config()
    return init_bilm(jax.random.key(3), config), config


def test_task_model_trains_and_the_bilm_stays_frozen(bilm):
    bilm_params, bilm_config = bilm
    frozen = jax.tree.map(np.array, bilm_params)
    model = ClassifierConfig(
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
    model = ClassifierConfig(
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


def test_classification_program_end_to_end(tmp_path):
    from train.configs import elmo_trec
    from train.elmo_downstream import run

    data = tmp_path / "trec"
    data.mkdir()
    for name, n, seed in (("train_5500.label", 24, 0), ("TREC_10.label", 8, 1)):
        sentences, labels = generated(n, seed)
        pairs = zip(sentences, labels, strict=True)
        lines = [f"{'HUM' if y else 'LOC'}:x {' '.join(s)}" for s, y in pairs]
        (data / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    bilm_dir = tmp_path / "bilm"
    bilm_dir.mkdir()
    write_random_weights(
        tiny_config(), bilm_dir / "lm_weights.hdf5", bilm_dir / "options.json", seed=2
    )
    c = elmo_trec.get_config("tiny")
    c.bilm.dir = str(bilm_dir)
    c.data.path = str(data)
    c.data.tfds_dir = str(tmp_path / "tfds")
    metrics = run(c, str(tmp_path / "run"))
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert sum(metrics[f"mix_layer_{k}"] for k in range(3)) == pytest.approx(1.0)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert records[-1]["test/accuracy"] == metrics["accuracy"]
    c.classifier.layers = (0, 5)
    with pytest.raises(ValueError, match=r"the biLM has layers 0..2"):
        run(c, str(tmp_path / "bad"))
