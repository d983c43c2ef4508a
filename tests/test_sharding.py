"""Data parallelism: a training step over 8 (simulated) devices equals the same step on one.

Each test runs one step (two for the stateful language models, so that the carried state is
used) of the ULMFiT LM, the classifier and the ELMo biLM from the same state and global batch,
over a mesh of `jax.devices()[:1]` and over all 8 devices, and compares the loss and every
updated parameter (relative 1e-5). Dropout is on, so this also checks that the masks are drawn
per example for the global batch, not per device.
"""

import jax
import numpy as np
import pytest
from elmo_fixtures import tiny_config as tiny_bilm_config

from elmo_jax.model.lstmp import zero_state as elmo_zero_state
from elmo_jax.training import steps as elmo_training
from elmo_jax.training.data import BiLMBatch as ElmoLMBatch
from elmo_jax.training.sampled_softmax import draw_negatives
from ulmfit_jax import optim
from ulmfit_jax.batching.classifier_batches import ClassifierBatch
from ulmfit_jax.batching.lm_stream import LMBatch, LMStream
from ulmfit_jax.core.runner import sharding
from ulmfit_jax.core.runner.train_state import create_train_state
from ulmfit_jax.inference.batch_predict import pad_rows, predict_batches
from ulmfit_jax.models import awd_lstm, classifier
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.models.classifier import ClassifierConfig
from ulmfit_jax.optim import param_groups
from ulmfit_jax.stages.classifier_steps import make_classifier_train_step
from ulmfit_jax.stages.lm_steps import evaluate_lm, make_lm_train_step

RTOL = 1e-5
BATCH = 8


@pytest.fixture(scope="module")
def meshes():
    assert jax.device_count() == 8, "tests/conftest.py asks for 8 CPU devices"
    return sharding.make_mesh(jax.devices()[:1]), sharding.make_mesh()


def relative_error(a, b) -> float:
    """Largest |a - b| over the leaves, relative to each leaf's largest |b|."""
    errors = jax.tree.map(
        lambda x, y: float(
            np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
            / max(np.max(np.abs(np.asarray(y, np.float64))), 1e-30)
        ),
        a,
        b,
    )
    return max(jax.tree.leaves(errors))


def run_both(meshes, make_step, make_state, batches):
    """(state, metrics, step) after `batches` on one device and on eight. `make_state` must
    build fresh arrays (the steps donate the state)."""
    results = []
    for mesh in meshes:
        step = make_step(mesh)
        state = make_state(mesh)
        for batch in batches:
            state, metrics = step(state, batch)
        results.append((state, metrics, step))
    return results


def assert_same_training(what, one, m_one, eight, m_eight, fields):
    """One device's and eight devices' loss and state `fields` agree within RTOL."""
    one, eight = jax.device_get((one, eight))
    errors = {"loss": relative_error(m_eight["loss"], m_one["loss"])}
    errors.update(
        {field: relative_error(getattr(eight, field), getattr(one, field)) for field in fields}
    )
    print(f"{what}, 8 devices vs 1, relative error:", errors)
    assert max(errors.values()) < RTOL


def lm_setup():
    config = AWDLSTMConfig(vocab_size=48, emb_sz=16, n_hid=24, n_layers=2)
    params = jax.device_get(awd_lstm.init_lm_params(jax.random.key(0), config))  # numpy
    labels = param_groups.lm_param_groups(params)
    optimizer = optim.make_optimizer(labels, lr=1e-2, total_steps=4)
    return config, params, labels, optimizer


def test_lm_step_is_the_same_on_one_and_eight_devices(meshes):
    config, params, labels, optimizer = lm_setup()
    trainable = optim.trainable_groups(labels)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        tokens = rng.integers(2, 48, (BATCH, 12)).astype(np.int32)
        targets = rng.integers(2, 48, (BATCH, 12)).astype(np.int32)
        lengths = np.full(BATCH, 10, np.int32)  # two padded columns, masked
        batches.append(LMBatch(tokens, targets, lengths, 10, np.float32(1.0), trainable))
    (one, m_one, _), (eight, m_eight, step) = run_both(
        meshes,
        lambda mesh: make_lm_train_step(config, optimizer, mesh=mesh),
        lambda mesh: create_train_state(
            params, optimizer, seed=3, lstm_state=awd_lstm.zero_state(config, BATCH)
        ),
        batches,
    )
    # Every device keeps its row of the carried state; parameters are replicated.
    h = eight.lstm_state[0][0]
    assert h.sharding.spec == sharding.batch_sharding(meshes[1]).spec
    assert [s.index[0] for s in h.addressable_shards] == [slice(i, i + 1) for i in range(8)]
    assert eight.params["decoder"]["bias"].sharding.is_fully_replicated
    assert_same_training("LM", one, m_one, eight, m_eight, ("params", "lstm_state"))
    assert np.array_equal(eight.key, one.key)
    tokens = batches[0].tokens[:4]
    with pytest.raises(ValueError, match="batch size \\(rows\\) 4 does not split over the 8"):
        step(eight, LMBatch(tokens, tokens, np.full(4, 8), 8, 1.0, batches[0].trainable))


def test_lm_evaluation_is_exact_for_any_row_count(meshes):
    config, params, _, _ = lm_setup()
    docs = [np.random.default_rng(i).integers(2, 48, 40) for i in range(6)]
    # 3 rows do not split over 8 devices: every device computes them (split rows are what the
    # training programs' tests evaluate).
    stream = LMStream(docs, batch_size=3, bptt=8, shuffle=False)
    one = evaluate_lm(params, config, stream.epoch_batches(0), meshes[0])
    eight = evaluate_lm(params, config, stream.epoch_batches(0), meshes[1])
    assert relative_error(eight["loss"], one["loss"]) < RTOL
    assert eight["accuracy"] == one["accuracy"]


def classifier_setup():
    config = ClassifierConfig(
        vocab_size=48, n_class=3, emb_sz=16, n_hid=24, n_layers=2, bptt=8, max_len=24, lin_ftrs=(8,)
    )
    params = jax.device_get(classifier.init_classifier_params(jax.random.key(1), config))
    labels = param_groups.classifier_param_groups(params)
    optimizer = optim.make_optimizer(labels, lr=1e-2, total_steps=4)
    return config, params, labels, optimizer


def test_classifier_step_is_the_same_on_one_and_eight_devices(meshes):
    config, params, labels, optimizer = classifier_setup()
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 20, BATCH).astype(np.int32)
    tokens = np.ones((BATCH, 24), np.int32)
    for i, n in enumerate(lengths):
        tokens[i, :n] = rng.integers(2, 48, n)
    labels_ = rng.integers(0, 3, BATCH).astype(np.int32)
    indices = np.arange(BATCH, dtype=np.int32)
    indices[-1] = -1  # a filler row
    batch = ClassifierBatch(tokens, lengths, labels_, indices, optim.trainable_groups(labels, 2))
    (one, m_one, _), (eight, m_eight, _) = run_both(
        meshes,
        lambda mesh: make_classifier_train_step(config, optimizer, mesh=mesh),
        lambda mesh: create_train_state(params, optimizer, seed=5),
        [batch],
    )
    # BatchNorm's running statistics included: the global batch's, as on one device.
    assert_same_training("classifier", one, m_one, eight, m_eight, ("params",))


def test_classifier_prediction_pads_rows_that_do_not_split(meshes):
    config, params, _, _ = classifier_setup()
    rng = np.random.default_rng(2)
    batch = ClassifierBatch(
        rng.integers(2, 48, (5, 16)).astype(np.int32),
        np.array([16, 9, 7, 3, 1], np.int32),
        np.array([0, 1, 2, 1, 0], np.int32),
        np.array([4, 0, 3, 1, -1], np.int32),  # the last row is filler
    )
    padded = pad_rows(batch, 8)
    assert padded.tokens.shape == (8, 16) and list(padded.indices[4:]) == [-1] * 4
    one, gold = predict_batches(params, config, [batch], meshes[0])
    eight, gold8 = predict_batches(params, config, [batch], meshes[1])
    assert one.shape == (4, 3) and list(gold) == [1, 1, 2, 0] and list(gold8) == list(gold)
    assert relative_error(eight, one) < RTOL


def test_bilm_step_is_the_same_on_one_and_eight_devices(meshes):
    config = tiny_bilm_config()
    vocab = 30
    options = elmo_training.TrainOptions(n_negative_samples=8, unroll_steps=6)
    params = jax.device_get(elmo_training.init_pretraining_params(jax.random.key(2), config, vocab))
    optimizer = elmo_training.make_bilm_optimizer(options)
    rng = np.random.default_rng(3)
    batches = []
    for i in range(2):
        chars = rng.integers(1, 262, (2, BATCH, 6, config.max_characters_per_token))
        targets = rng.integers(0, vocab, (2, BATCH, 6)).astype(np.int32)
        negatives = draw_negatives(np.random.default_rng([0, i]), 8, vocab)
        batches.append(ElmoLMBatch(chars.astype(np.int32), targets, negatives))
    (one, m_one, _), (eight, m_eight, _) = run_both(
        meshes,
        lambda mesh: elmo_training.make_train_step(config, options, mesh),
        lambda mesh: create_train_state(
            params,
            optimizer,
            seed=4,
            lstm_state=elmo_zero_state(config, BATCH),
            key_impl=elmo_training.KEY_IMPL,
        ),
        batches,
    )
    assert_same_training("biLM", one, m_one, eight, m_eight, ("params", "lstm_state"))


def test_auto_mesh_and_errors(monkeypatch):
    assert sharding.mesh_for_batch(16).size == 8
    assert sharding.mesh_for_batch(4).size == 4  # the most devices a batch of 4 splits over
    assert sharding.mesh_for_batch(12, 4).size == 4
    with pytest.raises(ValueError, match="batch size 6 does not split over 4 devices"):
        sharding.mesh_for_batch(6, 4)
    with pytest.raises(ValueError, match="num_devices=9"):
        sharding.mesh_for_batch(18, 9)
    for name in (
        *sharding._CLUSTER_ENV,
        "JAX_COORDINATOR_ADDRESS",
        "MEGASCALE_COORDINATOR_ADDRESS",
    ):
        monkeypatch.delenv(name, raising=False)
    assert not sharding.maybe_initialize_distributed("auto")  # one host: a no-op
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        sharding.maybe_initialize_distributed("yes")


def test_bilm_streams_split_by_host_into_the_single_host_batch():
    from elmo_jax.training.data import BidirectionalBatches, Vocabulary, encode_corpus

    rng = np.random.default_rng(5)
    sentences = [list(rng.choice(["a", "b", "cc", "ddd"], rng.integers(1, 9))) for _ in range(40)]
    corpus = encode_corpus(sentences, Vocabulary.build(sentences))
    whole = BidirectionalBatches(corpus, batch_size=4, unroll_steps=5, seed=1)
    hosts = [
        BidirectionalBatches(
            corpus, batch_size=4, unroll_steps=5, seed=1, shard_index=i, shard_count=2
        )
        for i in range(2)
    ]
    for _ in range(6):
        want = next(whole)
        got = [next(h) for h in hosts]
        assert np.array_equal(np.concatenate([g.chars for g in got], axis=1), want.chars)
        assert np.array_equal(np.concatenate([g.targets for g in got], axis=1), want.targets)
        assert hosts[0].position() == hosts[1].position() == whole.position()
    with pytest.raises(ValueError, match="shard_count dividing batch_size"):
        BidirectionalBatches(corpus, batch_size=3, unroll_steps=5, shard_index=0, shard_count=2)
