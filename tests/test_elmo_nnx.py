"""The ELMo NNX modules are a skin over bilm_apply / elmo_apply / classifier_logits: the same
parameter tree, the same outputs bit for bit, the biLM frozen unless requires_grad, AllenNLP's
fixture through the module, Linen through nnx.bridge, and the README's tagger example."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from elmo_fixtures import fixture_dir, load_fixture_sentences, load_fixture_top_layers, tiny_config
from flax import linen, nnx

from elmo_jax.downstream import models as task
from elmo_jax.downstream.nnx_models import TaskClassifier
from elmo_jax.model.bilm import bilm_apply, remove_sentence_boundaries
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.elmo import elmo_apply, init_elmo
from elmo_jax.model.init import init_bilm
from elmo_jax.nnx import BiLM, BiLMWeight, Elmo
from elmo_jax.weights.allennlp import load_allennlp, write_random_weights

CONFIG = tiny_config()
SENTENCES = [["The", "bank", "of", "the", "river"], ["A", "fine", "film"], ["Yes"]]


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def ids():
    return jnp.asarray(batch_to_ids(SENTENCES, pad_to=6))


def test_bilm_is_frozen_unless_requires_grad():
    bilm = BiLM(CONFIG, rngs=nnx.Rngs(params=0))
    assert_trees_equal(bilm.to_params(), init_bilm(nnx.Rngs(params=0).params(), CONFIG))
    assert not jax.tree.leaves(nnx.state(bilm, nnx.Param))
    assert_trees_equal(nnx.to_pure_dict(nnx.state(bilm, BiLMWeight)), bilm.to_params())
    trainable = BiLM.from_params(bilm.to_params(), CONFIG, requires_grad=True)
    assert_trees_equal(nnx.to_pure_dict(nnx.state(trainable, nnx.Param)), bilm.to_params())


def test_bilm_equals_bilm_apply_bit_for_bit(ids):
    bilm = BiLM(CONFIG, rngs=nnx.Rngs(0))
    params = bilm.to_params()
    module = nnx.jit(lambda m, c, s: m(c, s))
    functional = jax.jit(bilm_apply, static_argnums=1)
    state = want_state = None
    for _ in range(2):  # stateless, then continuing each row
        layers, mask, state = module(bilm, ids, state)
        want_layers, want_mask, want_state = functional(params, CONFIG, ids, want_state)
        assert_trees_equal((layers, mask, state), (want_layers, want_mask, want_state))
    # Eagerly too (no jit around either).
    assert_trees_equal(bilm(ids[:1]), bilm_apply(params, CONFIG, ids[:1]))


def test_elmo_equals_elmo_apply_in_eval_and_train(ids):
    elmo = Elmo(CONFIG, 2, rngs=nnx.Rngs(params=1, dropout=5))
    params = elmo.to_params()
    assert_trees_equal(params, init_elmo(init_bilm(nnx.Rngs(params=1).params(), CONFIG), CONFIG, 2))
    assert set(nnx.to_pure_dict(nnx.state(elmo, nnx.Param))) == {"scalar_mix_0", "scalar_mix_1"}
    module = nnx.jit(lambda m, c: m(c))
    functional = jax.jit(
        lambda p, c, k: elmo_apply(p, CONFIG, c, train=k is not None, rng=k, dropout=0.5)
    )
    assert_trees_equal(module(elmo, ids), functional(params, ids, None))
    elmo.train()
    stream = nnx.Rngs(dropout=5)
    for _ in range(2):
        assert_trees_equal(module(elmo, ids), functional(params, ids, stream.dropout()))


def test_elmo_gradients_reach_the_mixes_and_only_with_requires_grad_the_bilm(ids):
    def loss_fn(model):
        reps, mask, _ = model(ids)
        return jnp.sum(jnp.where(mask[..., None], reps[0], 0.0) ** 2)

    for requires_grad in (False, True):
        elmo = Elmo(CONFIG, 1, rngs=nnx.Rngs(0), requires_grad=requires_grad, dropout=0.0)
        frozen = jax.tree.map(np.array, elmo.bilm.to_params())
        optimizer = nnx.Optimizer(elmo, optax.adam(1e-2), wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            grads = nnx.grad(loss_fn)(model)
            optimizer.update(model, grads)
            return grads

        grads = nnx.to_pure_dict(step(elmo, optimizer))
        assert np.all(np.asarray(grads["scalar_mix_0"]["scalar_parameters"]) != 0)
        assert ("bilm" in grads) == requires_grad
        changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), frozen, elmo.bilm.to_params())
        assert any(jax.tree.leaves(changed)) == requires_grad
        if not requires_grad:
            assert_trees_equal(elmo.bilm.to_params(), frozen)  # bit for bit


def test_allennlp_files_in_and_out(tmp_path, ids):
    written = write_random_weights(CONFIG, tmp_path / "w.hdf5", tmp_path / "options.json", seed=2)
    elmo = Elmo.from_allennlp(tmp_path / "options.json", tmp_path / "w.hdf5")
    assert_trees_equal(elmo.bilm.to_params(), written)
    bilm = BiLM.from_allennlp(tmp_path / "options.json", tmp_path / "w.hdf5")
    bilm.save_allennlp(tmp_path / "again.hdf5", tmp_path / "again.json")
    params, config = load_allennlp(tmp_path / "again.json", tmp_path / "again.hdf5")
    assert config == CONFIG
    assert_trees_equal(params, bilm.to_params())
    # from_workdir reads the export folder `python -m train.elmo` writes.
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    bilm.save_allennlp(export / "lm_weights.hdf5", export / "options.json")
    assert_trees_equal(BiLM.from_workdir(tmp_path / "run").to_params(), written)


def test_allennlp_fixture_through_the_module(shared_dir):
    directory = fixture_dir(shared_dir)
    if not (directory / "options.json").exists():
        pytest.skip(f"AllenNLP's ELMo fixture not found in {directory}")
    bilm = BiLM.from_allennlp(directory / "options.json", directory / "lm_weights.hdf5")
    sentences = load_fixture_sentences(directory)
    expected = load_fixture_top_layers(directory)
    apply = nnx.jit(lambda m, c, s: m(c, s))
    state, worst = None, 0.0
    for i in range(10):
        batch = [sentences[k][i].split() for k in range(3)]
        layers, mask, state = apply(bilm, batch_to_ids(batch, pad_to=56), state)
        top, _ = remove_sentence_boundaries(layers[2], mask)
        for k in range(3):
            n = len(batch[k])
            worst = max(worst, float(np.abs(np.asarray(top[k, :n]) - expected[k][i]).max()))
    print(f"BiLM.from_allennlp vs bilm-tf, top layer: max abs error {worst:.2e}")
    assert worst < 1e-5  # tests/test_elmo_reference.py's


def test_from_pretrained_goes_through_the_registry(tmp_path, monkeypatch):
    """`BiLM` / `Elmo.from_pretrained(name)` load `load_pretrained(name)`'s weights (the
    registry's download path has its own tests; here it reads random released-layout files)."""
    from elmo_jax.weights import pretrained

    written = write_random_weights(CONFIG, tmp_path / "w.hdf5", tmp_path / "options.json", seed=3)
    monkeypatch.setattr(
        pretrained,
        "load_pretrained",
        lambda name: load_allennlp(tmp_path / "options.json", tmp_path / "w.hdf5"),
    )
    assert_trees_equal(BiLM.from_pretrained("small").to_params(), written)
    assert_trees_equal(Elmo.from_pretrained("small").bilm.to_params(), written)


class LinenElmoClassifier(linen.Module):
    @linen.compact
    def __call__(self, char_ids):
        reps, mask, _ = nnx.bridge.to_linen(Elmo, CONFIG, 1, name="elmo")(char_ids)
        return linen.Dense(2)(reps[0]), reps[0]


def test_elmo_inside_a_linen_model_through_nnx_bridge(ids):
    model = LinenElmoClassifier()
    variables = model.init({"params": jax.random.key(0)}, ids)
    # The mix trains ("params"); the frozen biLM is a collection of its own.
    assert set(variables["params"]["elmo"]) == {"scalar_mix_0"}
    (bilm_collection,) = set(variables) - {"params"}
    bilm_params = variables[bilm_collection]["elmo"]["bilm"]
    out, reps = model.apply(variables, ids)
    params = {"bilm": bilm_params, **variables["params"]["elmo"]}
    np.testing.assert_array_equal(reps, elmo_apply(params, CONFIG, ids)[0][0])
    assert out.shape == (3, 6, 2)


def test_task_classifier_module_equals_the_functional_model(ids):
    bilm = BiLM(CONFIG, rngs=nnx.Rngs(0))
    config = task.SentenceClassifierConfig(num_classes=2, input_dim=CONFIG.output_dim, hidden=4)
    model = TaskClassifier(config, bilm=bilm, rngs=nnx.Rngs(params=3, dropout=4))
    params = model.to_params()
    assert_trees_equal(params, task.init_classifier(nnx.Rngs(params=3).params(), config))
    layers, mask = task.bilm_layers(bilm.to_params(), CONFIG, ids, config.layers)
    np.testing.assert_array_equal(model(ids), task.classifier_logits(params, config, layers, mask))
    model.train()
    key = nnx.Rngs(dropout=4).dropout()
    np.testing.assert_array_equal(
        model.from_layers(layers, mask),
        task.classifier_logits(params, config, layers, mask, train=True, rng=key),
    )
    # Trains with nnx.Optimizer; the biLM stays bit for bit.
    labels = jnp.array([0, 1, 1])
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            logits = model(ids)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        optimizer.update(model, nnx.grad(loss_fn)(model))

    step(model, optimizer)
    assert not np.array_equal(model.to_params()["output"]["w"], params["output"]["w"])
    assert_trees_equal(model.bilm.to_params(), bilm.to_params())


def test_readme_tagger_example(tmp_path):
    options, weights = tmp_path / "options.json", tmp_path / "weights.hdf5"
    write_random_weights(CONFIG, weights, options)
    # ---- README: Flax NNX, tagger example ----
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from elmo_jax import batch_to_ids
    from elmo_jax.nnx import Elmo

    class Tagger(nnx.Module):
        """ELMo (frozen biLM, trainable mix) -> Linear -> per-token tag logits."""

        def __init__(self, elmo: Elmo, n_tags: int, *, rngs: nnx.Rngs):
            self.elmo = elmo
            self.out = nnx.Linear(elmo.config.output_dim, n_tags, rngs=rngs)

        def __call__(self, char_ids):
            (reps,), mask, _ = self.elmo(char_ids)  # float[B, T, 2P], bool[B, T]
            return self.out(reps), mask

    rngs = nnx.Rngs(params=0, dropout=1)
    elmo = Elmo.from_allennlp(options, weights, num_output_representations=1, rngs=rngs)
    tagger = Tagger(elmo, n_tags=3, rngs=rngs)
    tagger.train()  # ELMo's dropout on
    optimizer = nnx.Optimizer(tagger, optax.adam(1e-2), wrt=nnx.Param)  # never the biLM

    sentences = [["John", "lives", "in", "Berlin"], ["Mary", "sings"]]
    char_ids = batch_to_ids(sentences, pad_to=4)
    tags = jnp.array([[1, 0, 0, 2], [1, 0, 0, 0]])

    @nnx.jit
    def train_step(tagger, optimizer, char_ids, tags):
        def loss_fn(tagger):
            logits, mask = tagger(char_ids)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, tags)
            return jnp.sum(losses * mask) / jnp.sum(mask)

        loss, grads = nnx.value_and_grad(loss_fn)(tagger)
        optimizer.update(tagger, grads)
        return loss

    for _ in range(3):
        loss = train_step(tagger, optimizer, char_ids, tags)
    tagger.eval()
    logits, mask = tagger(char_ids)  # float[2, 4, 3]
    # ---- end ----
    assert logits.shape == (2, 4, 3) and np.isfinite(float(loss))
    assert_trees_equal(tagger.elmo.bilm.to_params(), load_allennlp(options, weights)[0])
