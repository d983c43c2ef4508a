"""ULMFiT classifier: BPT3C gradient truncation, BatchNorm against torch, bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ulmfit_jax
from ulmfit_jax.models import classifier

CONFIG = ulmfit_jax.ClassifierConfig(
    vocab_size=60, n_class=3, emb_sz=6, n_hid=8, n_layers=2, lin_ftrs=(5,), bptt=8, max_len=16
)


@pytest.fixture(scope="module")
def params():
    return ulmfit_jax.init_classifier_params(jax.random.key(0), CONFIG)


def test_bpt3c_keeps_fastai_chunks_and_stops_gradients(params):
    """Length 40, bptt 8, max_len 16: only chunks starting at 24 and 32 are kept (40 - i <= 16),
    and no gradient reaches tokens of earlier chunks (the carried state is detached)."""
    doc = np.arange(2, 42, dtype=np.int32)  # 40 distinct ids: each id marks one position
    tokens, lengths = ulmfit_jax.pad_documents([doc.tolist()], CONFIG)
    outputs, keep = classifier.bpt3c_encode(params["encoder"], CONFIG, tokens, lengths, None)
    assert outputs.shape == (1, 40, 6)
    np.testing.assert_array_equal(np.flatnonzero(keep[0]), np.arange(24, 40))

    def loss(embedding):
        p = {**params, "encoder": {**params["encoder"], "embedding": embedding}}
        return ulmfit_jax.classifier_apply(p, CONFIG, tokens, lengths).sum()

    grad = np.asarray(jax.grad(loss)(params["encoder"]["embedding"]))
    per_position = np.abs(grad[doc]).sum(axis=1)
    assert np.all(per_position[:24] == 0.0)
    assert np.all(per_position[24:] > 0.0)


def test_padding_beyond_the_document_changes_nothing(params):
    doc = list(range(2, 13))
    alone = ulmfit_jax.classifier_apply(params, CONFIG, [doc])
    tokens = np.ones((2, 40), np.int32)
    tokens[0, :11] = doc
    tokens[1, :3] = [5, 6, 7]
    batched = ulmfit_jax.classifier_apply(params, CONFIG, tokens, np.array([11, 3]))
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-6)


def _torch_head_block(torch, block):
    """PyTorch's BatchNorm1d and bias-free Linear of one head block (`params["head"]["layer_i"]`,
    kernel float[n_in, n_out]), BatchNorm's bias set to the head's 1e-3 as fastai's init."""
    n_in, n_out = block["linear"]["kernel"].shape
    bn = torch.nn.BatchNorm1d(n_in)
    lin = torch.nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
        lin.weight.copy_(torch.tensor(np.asarray(block["linear"]["kernel"]).T))
    return bn, lin


def test_training_batch_norm_matches_torch(params):
    torch = pytest.importorskip("torch")
    config = dataclasses.replace(CONFIG, output_p=0.0, ps=(0.0,))
    pooled = jnp.asarray(np.random.default_rng(0).normal(size=(7, 18)), jnp.float32)
    logits, stats = classifier.head_apply(params["head"], config, pooled, jax.random.key(0))
    bn, lin = _torch_head_block(torch, params["head"]["layer_0"])
    hidden = torch.relu(lin(bn(torch.tensor(np.asarray(pooled)))))
    np.testing.assert_allclose(stats["layer_0"]["mean"], bn.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(stats["layer_0"]["var"], bn.running_var.numpy(), atol=1e-6)
    # The first block's output feeds the second; compare through the full head.
    bn2, lin2 = _torch_head_block(torch, params["head"]["layer_1"])
    expected = lin2(bn2(hidden)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    merged = ulmfit_jax.merge_batch_stats(params, stats)
    np.testing.assert_array_equal(merged["head"]["layer_0"]["bn"]["var"], stats["layer_0"]["var"])


def test_from_language_model_keeps_the_encoder():
    lm_config = ulmfit_jax.AWDLSTMConfig(vocab_size=60, emb_sz=6, n_hid=8, n_layers=2)
    lm = ulmfit_jax.init_lm_params(jax.random.key(1), lm_config)
    params = ulmfit_jax.from_language_model(lm, jax.random.key(2), CONFIG)
    assert params["encoder"] is lm["encoder"]
    assert ulmfit_jax.classifier_apply(params, CONFIG, [[2, 3, 4]]).shape == (1, 3)


@pytest.mark.parametrize(
    "docs, lengths, message",
    [
        ([[2, 3], []], None, "document 1 is empty"),
        ([], None, "no documents"),
        ([[2, 60]], None, "outside the vocabulary"),
        (np.array([[2, 3, 1]]), None, "needs its `lengths`"),
        (np.array([[2, 3, 1]]), np.array([2, 0]), "one per row"),
        (np.array([[2, 3, 1]]), np.array([0]), "document 0 is empty"),
        (np.array([[2, 3, 1]]), np.array([5]), "must lie in"),
    ],
)
def test_bad_documents_are_named(params, docs, lengths, message):
    with pytest.raises(ValueError, match=message):
        ulmfit_jax.classifier_apply(params, CONFIG, docs, lengths)


def test_config_checks():
    with pytest.raises(ValueError, match="ps has 2 values"):
        ulmfit_jax.ClassifierConfig(vocab_size=10, n_class=2, lin_ftrs=(5,), ps=(0.1, 0.2))
    with pytest.raises(ValueError, match="n_class"):
        ulmfit_jax.ClassifierConfig(vocab_size=10, n_class=0)
