"""The ULMFiT NNX modules are a skin over the functional API: the same parameter tree, the same
outputs bit for bit (eval, and train with the key drawn from the same Rngs stream), fastai's
parity figures, nnx.Optimizer with gradual unfreezing, Linen through nnx.bridge, and nnx.jit on
8 devices."""

import dataclasses
import json
import pathlib
import textwrap

import jax
import numpy as np
import optax
import pytest
from flax import linen, nnx, traverse_util

from ulmfit_jax import optim
from ulmfit_jax.core.nn import nnx_params
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.nnx import (
    AWDLSTMEncoder,
    LanguageModel,
    TextClassifier,
    make_nnx_optimizer,
    param_labels,
)
from ulmfit_jax.optim import param_groups

LM = AWDLSTMConfig(vocab_size=24, emb_sz=8, n_hid=12, n_layers=2)
CLS = ClassifierConfig(vocab_size=24, n_class=3, emb_sz=8, n_hid=12, n_layers=2, bptt=4, max_len=8)
ATOL = 1e-4  # tests/test_fastai_parity.py's
RTOL = 1e-5  # tests/test_sharding.py's


def tokens(batch=4, time=6, seed=0, vocab=24):
    return np.random.default_rng(seed).integers(2, vocab, (batch, time)).astype(np.int32)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


# --------------------------------------------------------------------------------------------
# The same tree and the same outputs
# --------------------------------------------------------------------------------------------


def test_lm_holds_the_functional_tree():
    model = LanguageModel(LM, rngs=nnx.Rngs(params=0, dropout=1))
    want = awd_lstm.init_lm_params(nnx.Rngs(params=0).params(), LM)
    got = model.to_params()
    assert_trees_equal(got, want)
    # nnx.state(model, nnx.Param) has the functional dict's paths and values.
    assert_trees_equal(nnx.to_pure_dict(nnx.state(model, nnx.Param)), want)
    # to_params hands out the held arrays themselves; from_params takes them back.
    assert got["encoder"]["embedding"] is model.encoder.embedding.get_value()
    again = LanguageModel.from_params(got, LM)
    assert_trees_equal(again.to_params(), want)


def test_lm_equals_lm_apply_bit_for_bit_in_eval_and_train():
    model = LanguageModel(LM, rngs=nnx.Rngs(params=0, dropout=7))
    params = model.to_params()
    x, y = tokens(), tokens(seed=1)
    # Evaluation, over two stateful windows.
    got, state = model(x)
    want, want_state = awd_lstm.lm_apply(params, LM, x)
    np.testing.assert_array_equal(got, want)
    got, state = model(y, state)
    want, want_state = awd_lstm.lm_apply(params, LM, y, want_state)
    np.testing.assert_array_equal(got, want)
    assert_trees_equal(state, want_state)
    # Training: one key per call from the same stream.
    model.train()
    assert not model.deterministic and not model.encoder.deterministic
    stream = nnx.Rngs(dropout=7)
    for window in (x, y):
        got, _ = model(window)
        want, _ = awd_lstm.lm_apply(params, LM, window, train=True, rng=stream.dropout())
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, model(y, deterministic=True)[0])  # dropout did something
    # A key passed to the call.
    got, _ = model(x, rngs=jax.random.key(3))
    want, _ = awd_lstm.lm_apply(params, LM, x, train=True, rng=jax.random.key(3))
    np.testing.assert_array_equal(got, want)
    model.eval()
    np.testing.assert_array_equal(model(x)[0], awd_lstm.lm_apply(params, LM, x)[0])


def test_lm_under_nnx_jit_equals_jitted_lm_apply():
    model = LanguageModel(LM, rngs=nnx.Rngs(params=0, dropout=2))
    params = model.to_params()
    model.train()
    x = tokens()
    got, _ = nnx.jit(lambda m, t: m(t))(model, x)
    want, _ = jax.jit(lambda p, t, k: awd_lstm.lm_apply(p, LM, t, train=True, rng=k))(
        params, x, nnx.Rngs(dropout=2).dropout()
    )
    np.testing.assert_array_equal(got, want)


def test_encoder_equals_encoder_apply():
    encoder = AWDLSTMEncoder(LM, rngs=nnx.Rngs(params=4, dropout=5))
    params = encoder.to_params()
    assert_trees_equal(params, awd_lstm.init_encoder_params(nnx.Rngs(params=4).params(), LM))
    x = tokens()
    zero = awd_lstm.zero_state(LM, 4)
    assert_trees_equal(encoder(x), awd_lstm.encoder_apply(params, LM, x, zero))
    encoder.train()
    key = nnx.Rngs(dropout=5).dropout()
    lengths = np.array([6, 3, 1, 5], np.int32)
    assert_trees_equal(
        encoder(x, lengths=lengths),
        awd_lstm.encoder_apply(params, LM, x, zero, lengths=lengths, rng=key),
    )


def test_classifier_equals_classifier_apply_and_keeps_batch_stats():
    model = TextClassifier(CLS, rngs=nnx.Rngs(params=0, dropout=3))
    params = model.to_params()
    assert_trees_equal(params, classifier.init_classifier_params(nnx.Rngs(params=0).params(), CLS))
    stats = nnx.state(model, nnx.BatchStat)
    assert set(nnx.to_pure_dict(stats)["head"]["layer_0"]["bn"]) == {"mean", "var"}
    assert "mean" not in nnx.to_pure_dict(nnx.state(model, nnx.Param))["head"]["layer_0"]["bn"]
    docs = [[2, 5, 7, 9, 3, 4, 11], [2, 8], [2, 3, 4, 5, 6], [9, 9, 9]]
    np.testing.assert_array_equal(model(docs), classifier.classifier_apply(params, CLS, docs))
    x, lengths = classifier.pad_documents(docs, CLS)
    np.testing.assert_array_equal(
        model(x, lengths), classifier.classifier_apply(params, CLS, x, lengths)
    )
    model.train()
    got = model(x, lengths)
    want, new_stats = classifier.classifier_apply(
        params, CLS, x, lengths, train=True, rng=nnx.Rngs(dropout=3).dropout(),
        return_batch_stats=True,
    )  # fmt: skip
    np.testing.assert_array_equal(got, want)
    # The running statistics moved exactly as merge_batch_stats writes them.
    assert_trees_equal(model.to_params(), classifier.merge_batch_stats(params, new_stats))


# --------------------------------------------------------------------------------------------
# Weights in and out
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastai_fixture(fixtures_dir):
    pytest.importorskip("torch")
    root = fixtures_dir / "fastai"
    return root, dict(np.load(root / "expected.npz"))


def test_fastai_lm_through_the_module_reproduces_fastai(fastai_fixture):
    root, expected = fastai_fixture
    model = LanguageModel.from_fastai(root / "lm.pth", root / "lm_itos.pkl")
    n_batches, _, bptt, _ = expected["lm_logits"].shape
    step = nnx.jit(lambda m, t, s: m(t, s))
    state, worst = None, 0.0
    for b in range(n_batches):
        logits, state = step(model, expected["lm_tokens"][:, b * bptt : (b + 1) * bptt], state)
        worst = max(worst, float(np.abs(logits - expected["lm_logits"][b]).max()))
    print(f"LanguageModel.from_fastai vs fastai: max abs error {worst:.2e}")
    assert worst < ATOL


def test_fastai_classifier_through_the_module_reproduces_fastai(fastai_fixture):
    root, expected = fastai_fixture
    config = ClassifierConfig(**json.loads((root / "classifier_config.json").read_text()))
    model = TextClassifier.from_fastai(root / "classifier.pth", config=config)
    lengths = expected["clas_doc_lengths"]
    docs = [d.tolist() for d in np.split(expected["clas_docs"], np.cumsum(lengths)[:-1])]
    worst = float(np.abs(model(docs) - expected["clas_logits"]).max())
    print(f"TextClassifier.from_fastai vs fastai: max abs error {worst:.2e}")
    assert worst < ATOL


def test_classifier_from_a_fastai_language_model(fastai_fixture):
    root, _ = fastai_fixture
    model = TextClassifier.from_fastai(
        root / "lm.pth", root / "lm_itos.pkl", n_class=2, bptt=8, rngs=nnx.Rngs(0)
    )
    lm = LanguageModel.from_fastai(root / "lm.pth")
    assert_trees_equal(model.encoder.to_params(), lm.encoder.to_params())
    assert model.config.n_class == 2 and model.config.vocab_size == lm.config.vocab_size
    with pytest.raises(ValueError, match="n_class"):
        TextClassifier.from_fastai(root / "lm.pth")


def test_from_workdir_reads_the_stage_exports(tmp_path):
    from ulmfit_jax.weights.export import export_params

    vocab = ["xxunk", "xxpad"] + [f"w{i}" for i in range(22)]
    lm = LanguageModel(LM, rngs=nnx.Rngs(0))
    meta = {"stage": "finetune_lm", "model": dataclasses.asdict(LM), "vocab": vocab}
    export_params(tmp_path / "lm", lm.to_params(), meta)
    assert_trees_equal(LanguageModel.from_workdir(tmp_path / "lm").to_params(), lm.to_params())
    clf = TextClassifier(CLS, rngs=nnx.Rngs(1))
    meta = {"stage": "classify", "model": dataclasses.asdict(CLS), "vocab": vocab}
    export_params(tmp_path / "clf", clf.to_params(), meta)
    loaded = TextClassifier.from_workdir(tmp_path / "clf")
    assert_trees_equal(loaded.to_params(), clf.to_params())
    assert loaded.config == CLS


def test_from_pretrained_goes_through_the_registry(fastai_fixture, monkeypatch):
    """`LanguageModel.from_pretrained(name)` is `load_pretrained(name)` in a module (the
    registry's download path has its own tests; here it returns the fastai fixture)."""
    from ulmfit_jax.weights import fastai, pretrained

    root, _ = fastai_fixture
    asked = []

    def load_pretrained(name):
        asked.append(name)
        return fastai.load_fastai_lm(root / "lm.pth", root / "lm_itos.pkl")

    monkeypatch.setattr(pretrained, "load_pretrained", load_pretrained)
    model = LanguageModel.from_pretrained("wt103_fwd")
    assert asked == ["wt103_fwd"]
    assert_trees_equal(model.to_params(), LanguageModel.from_fastai(root / "lm.pth").to_params())


# --------------------------------------------------------------------------------------------
# nnx.Optimizer with fastai's layer groups
# --------------------------------------------------------------------------------------------


def test_param_labels_are_the_functional_groups_in_the_module_tree():
    model = TextClassifier(CLS, rngs=nnx.Rngs(0))
    labels = param_labels(model)
    assert jax.tree.structure(labels) == jax.tree.structure(
        nnx.as_pure(nnx.state(model, nnx.Param))
    )
    flat = nnx.to_pure_dict(labels)
    want = param_groups.classifier_param_groups(model.to_params())
    assert flat["encoder"] == want["encoder"]
    assert flat["head"]["layer_0"]["bn"] == {"scale": "group_3", "bias": "group_3"}
    assert optim.trainable_groups(labels, 1) == {
        "group_0": False, "group_1": False, "group_2": False, "group_3": True,
    }  # fmt: skip


def classifier_train_step():
    def loss_fn(model, x, lengths, labels):
        logits = model(x, lengths)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @nnx.jit
    def step(model, optimizer, x, lengths, labels, trainable):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, lengths, labels)
        optimizer.update(model, grads, trainable=trainable)
        return loss

    return step


def test_gradual_unfreezing_with_nnx_optimizer_keeps_frozen_groups_bit_identical():
    model = TextClassifier(CLS, rngs=nnx.Rngs(params=0, dropout=1))
    model.train()
    labels = param_labels(model)
    optimizer = make_nnx_optimizer(model, lr=1e-2, total_steps=6)
    x, lengths = classifier.pad_documents([[2, 5, 7, 9, 3], [2, 8], [4, 5, 6], [9, 9]], CLS)
    y = np.array([0, 1, 2, 1], np.int32)
    step = classifier_train_step()
    flat_labels = nnx.to_pure_dict(labels)
    for n_trainable in (1, 2):  # freeze_to(-1), then freeze_to(-2): one compilation
        trainable = optim.trainable_groups(labels, n_trainable)
        before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        stats = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))
        for _ in range(2):
            step(model, optimizer, x, lengths, y, trainable)
        after = nnx.to_pure_dict(nnx.state(model, nnx.Param))

        def check(label, old, new, trainable=trainable):
            if trainable[label]:
                assert not np.array_equal(old, new), label
            else:
                np.testing.assert_array_equal(old, new)  # bit for bit

        jax.tree.map(check, flat_labels, before, after)
        # BatchNorm statistics are not Params: the forward pass moves them, not the optimiser.
        new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
        assert all(
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(new_stats), strict=True)
        )
    assert int(optimizer.step[...]) == 4


def test_nnx_optimizer_step_equals_the_functional_step():
    """The NNX loop and the functional loop with the same optax optimiser agree."""
    model = LanguageModel(LM, rngs=nnx.Rngs(params=0, dropout=1))
    model.train()
    params = model.to_params()
    labels = param_labels(model)
    optimizer = make_nnx_optimizer(model, lr=1e-2, total_steps=4)
    x, y = tokens(), tokens(seed=1)
    trainable = optim.trainable_groups(labels, 2)

    def loss_fn(model):
        logits, _ = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @nnx.jit
    def step(model, optimizer, trainable):
        grads = nnx.grad(loss_fn)(model)
        optimizer.update(model, grads, trainable=trainable)

    step(model, optimizer, trainable)

    f_labels = param_groups.lm_param_groups(params)
    tx = optim.make_optimizer(f_labels, lr=1e-2, total_steps=4)

    @jax.jit
    def f_step(params, key):
        def f_loss(p):
            logits, _ = awd_lstm.lm_apply(p, LM, x, train=True, rng=key)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        grads = jax.grad(f_loss)(params)
        updates, _ = tx.update(
            grads, tx.init(params), params, trainable=optim.trainable_groups(f_labels, 2)
        )
        return optax.apply_updates(params, updates)

    want = f_step(params, nnx.Rngs(dropout=1).dropout())
    got = model.to_params()
    err = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), got, want)))
    print(f"nnx.Optimizer step vs functional step: max abs difference {err:.1e}")
    assert err <= 1e-6
    np.testing.assert_array_equal(
        got["encoder"]["lstm_0"]["w_ih"], params["encoder"]["lstm_0"]["w_ih"]
    )


# --------------------------------------------------------------------------------------------
# Linen and sharding
# --------------------------------------------------------------------------------------------


class LinenTagger(linen.Module):
    """A Linen model using the NNX language model's logits as features."""

    @linen.compact
    def __call__(self, x, deterministic=True):
        logits, _ = nnx.bridge.to_linen(LanguageModel, LM, name="lm")(
            x, deterministic=deterministic
        )
        return linen.Dense(2)(logits), logits


def test_modules_inside_a_linen_model_through_nnx_bridge():
    x = tokens()
    tagger = LinenTagger()
    variables = tagger.init({"params": jax.random.key(0)}, x)
    lm_params = variables["params"]["lm"]
    assert set(lm_params) == {"encoder", "decoder"}
    out, logits = tagger.apply(variables, x)
    np.testing.assert_array_equal(logits, awd_lstm.lm_apply(lm_params, LM, x)[0])
    assert out.shape == (4, 6, 2)
    # Training mode inside Linen draws its dropout keys from Linen's "dropout" rng.
    _, train_logits = tagger.apply(
        variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)}
    )
    assert not np.array_equal(train_logits, logits)
    # The classifier's BatchNorm statistics are a Linen "batch_stats" collection.
    clf = nnx.bridge.to_linen(TextClassifier, CLS)
    docs, lengths = classifier.pad_documents([[2, 3, 4], [5, 6, 7, 8, 9]], CLS)
    clf_vars = clf.init({"params": jax.random.key(2)}, docs, lengths)
    assert set(clf_vars) == {"params", "batch_stats"}
    flat = traverse_util.flatten_dict(clf_vars["params"])
    flat.update(traverse_util.flatten_dict(clf_vars["batch_stats"]))
    functional = traverse_util.unflatten_dict(flat)
    np.testing.assert_array_equal(
        clf.apply(clf_vars, docs, lengths),
        classifier.classifier_apply(functional, CLS, docs, lengths),
    )


def test_nnx_jit_on_eight_devices_equals_one():
    assert jax.device_count() == 8, "tests/conftest.py asks for 8 CPU devices"
    meshes = sharding.make_mesh(jax.devices()[:1]), sharding.make_mesh()
    x, y = tokens(batch=8), tokens(batch=8, seed=1)
    rules = [("encoder/embedding", (sharding.DATA_AXIS, None))]  # rows over the mesh

    def loss_fn(model, x, y):
        logits, state = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state

    @nnx.jit
    def step(model, x, y):
        (loss, state), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
        return loss, state, grads

    results = []
    for mesh in meshes:
        with jax.set_mesh(mesh):
            model = LanguageModel(LM, rngs=nnx.Rngs(params=0, dropout=1), sharding_rules=rules)
        model.train()
        nnx_params.place(model, mesh)
        embedding = model.encoder.embedding.get_value()
        assert embedding.sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS, None)
        assert model.encoder.lstm_0["w_hh"].get_value().sharding.is_fully_replicated
        loss, state, grads = step(model, *sharding.put_batch((x, y), mesh))
        if mesh.size > 1:  # the state comes out split by rows, as the functional steps'
            assert state[0][0].sharding.spec == sharding.batch_sharding(mesh).spec
        results.append(jax.device_get((loss, state, nnx.to_pure_dict(grads))))
    one, eight = results

    def relative(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

    error = max(jax.tree.leaves(jax.tree.map(relative, eight, one)))
    print(f"nnx.jit on 8 devices vs 1: relative error {error:.1e}")
    assert error < RTOL


# --------------------------------------------------------------------------------------------
# README's example: a classifier fine-tuned from fastai weights with gradual unfreezing
# --------------------------------------------------------------------------------------------


def test_readme_classifier_example(fastai_fixture):
    root, _ = fastai_fixture
    lm_pth, itos_pkl = root / "lm.pth", root / "lm_itos.pkl"
    rng = np.random.default_rng(0)
    batches = [
        (rng.integers(2, 48, (8, 16)).astype(np.int32), np.full(8, 16, np.int32),
         rng.integers(0, 2, 8).astype(np.int32))
        for _ in range(2)
    ]  # fmt: skip
    # ---- README: Flax NNX, classifier example ----
    import optax
    from flax import nnx

    from ulmfit_jax.nnx import TextClassifier, make_nnx_optimizer, new_nnx_stage, param_labels
    from ulmfit_jax.optim.optimizer import trainable_groups

    stages = [  # (trainable groups, peak lr): ULMFiT's head first, then one more group each
        (1, 2e-2),
        (2, slice(1e-2 / 2.6**4, 1e-2)),
        (3, slice(5e-3 / 2.6**4, 5e-3)),
        (None, slice(1e-3 / 2.6**4, 1e-3)),
    ]
    model = TextClassifier.from_fastai(lm_pth, itos_pkl, n_class=2, rngs=nnx.Rngs(0))
    model.train()  # dropout and BatchNorm batch statistics
    labels = param_labels(model)  # fastai's layer groups, in the module's Param tree
    optimizer = make_nnx_optimizer(model, lr=stages[0][1], total_steps=len(batches))

    @nnx.jit
    def train_step(model, optimizer, tokens, lengths, targets, trainable):
        def loss_fn(model):
            logits = model(tokens, lengths)
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, trainable=trainable)
        return loss

    for k, (n_trainable, lr) in enumerate(stages):
        if k:  # fastai's freeze_to + fit_one_cycle: fresh schedule and Adam moments
            new_nnx_stage(optimizer, model, lr=lr, total_steps=len(batches))
        trainable = trainable_groups(labels, n_trainable)
        for tokens, lengths, targets in batches:
            loss = train_step(model, optimizer, tokens, lengths, targets, trainable)
    model.eval()
    # ---- end ----
    assert np.isfinite(float(loss))
    assert int(optimizer.opt_state.step[...]) == len(batches)  # the last stage's schedule


def readme_example(path, name):
    """The code between a test's README markers, dedented."""
    source = path.read_text()
    start = source.index("\n", source.index(f"# ---- README: Flax NNX, {name} example ----")) + 1
    return textwrap.dedent(source[start : source.index("    # ---- end ----", start)])


@pytest.mark.parametrize(
    "test_file, name", [("test_nnx.py", "classifier"), ("test_elmo_nnx.py", "tagger")]
)
def test_nnx_guide_examples_are_the_tested_code(test_file, name):
    root = pathlib.Path(__file__).resolve().parent
    readme = (root.parent / "docs" / "guides" / "nnx.md").read_text()

    def code_lines(text):  # `ruff format` spaces the README's blocks out; blank lines aside
        return "\n".join(line for line in text.splitlines() if line.strip())

    assert code_lines(readme_example(root / test_file, name)) in code_lines(readme)
