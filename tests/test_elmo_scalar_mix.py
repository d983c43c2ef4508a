"""ScalarMix (AllenNLP's formula) and the ELMo wrapper (mixes, boundaries, dropout, gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from elmo_fixtures import tiny_config

from elmo_jax.model.bilm import bilm_apply
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.elmo import elmo_apply, elmo_mix, init_elmo
from elmo_jax.model.init import init_bilm
from elmo_jax.model.scalar_mix import init_scalar_mix, scalar_mix


def _numpy_mix(w, gamma, layers, mask, do_layer_norm):
    """AllenNLP's ScalarMix.forward written out in float64."""
    s = np.exp(w - w.max()) / np.exp(w - w.max()).sum()
    out = 0.0
    for weight, x in zip(s, layers, strict=True):
        if do_layer_norm:
            m = mask[..., None]
            n = mask.sum() * x.shape[-1]
            mean = (x * m).sum() / n
            var = (((x * m - mean) * m) ** 2).sum() / n
            x = (x - mean) / np.sqrt(var + 1e-13)
        out = out + weight * x
    return gamma * out


@pytest.mark.parametrize("do_layer_norm", [False, True])
def test_scalar_mix_matches_allennlp_formula(do_layer_norm):
    rng = np.random.default_rng(0)
    layers = [rng.normal(k, 1 + k, (2, 5, 6)) for k in range(3)]
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    params = {"scalar_parameters": jnp.array([0.3, -1.0, 2.0]), "gamma": jnp.array(0.7)}
    got = scalar_mix(
        params,
        [jnp.asarray(x, jnp.float32) for x in layers],
        jnp.asarray(mask),
        do_layer_norm=do_layer_norm,
    )
    want = _numpy_mix(np.array([0.3, -1.0, 2.0]), 0.7, layers, mask, do_layer_norm)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_scalar_mix_defaults_and_errors():
    params = init_scalar_mix(3)
    layers = [jnp.full((1, 2, 4), float(k)) for k in range(3)]
    np.testing.assert_allclose(scalar_mix(params, layers), 1.0)  # even average, gamma 1
    only_first_lstm = init_scalar_mix(3, [-9e10, 1.0, -9e10])
    np.testing.assert_allclose(scalar_mix(only_first_lstm, layers), 1.0)
    with pytest.raises(ValueError, match="2 layers given to a mix of 3"):
        scalar_mix(params, layers[:2])
    with pytest.raises(ValueError, match="needs the mask"):
        scalar_mix(params, layers, do_layer_norm=True)
    with pytest.raises(ValueError, match="has 2 values for 3 layers"):
        init_scalar_mix(3, [0.0, 1.0])


def test_elmo_representations_boundaries_dropout_and_gradients():
    config = tiny_config()
    params = init_elmo(init_bilm(jax.random.key(0), config), config, num_output_representations=2)
    ids = batch_to_ids([["The", "sentence", "."], ["ELMo", "helps", "disambiguate", "x", "y"]])
    apply = jax.jit(elmo_apply, static_argnums=1)
    reps, mask, _ = apply(params, config, ids)
    assert len(reps) == 2 and reps[0].shape == (2, 5, 16) and mask.shape == (2, 5)
    assert np.asarray(mask).sum(1).tolist() == [3, 5]
    np.testing.assert_allclose(reps[0], reps[1])  # same initial mixes

    # The rest reuses the biLM layers: `elmo_apply` is `bilm_apply` then `elmo_mix`.
    layers, bilm_mask, _ = jax.jit(bilm_apply, static_argnums=1)(params["bilm"], config, ids)
    kept, kept_mask = elmo_mix(params, layers, bilm_mask, keep_sentence_boundaries=True)
    assert kept[0].shape == (2, 7, 16) and np.asarray(kept_mask).sum(1).tolist() == [5, 7]
    np.testing.assert_allclose(kept[0][:, 1:-1] * mask[..., None], reps[0], atol=1e-6)
    dropped, _ = elmo_mix(params, layers, bilm_mask, train=True, rng=jax.random.key(1))
    zeros = np.asarray(dropped[0] == 0) & np.asarray(mask)[..., None]
    assert 0.3 < zeros.mean() / np.asarray(mask).mean() < 0.7  # dropout 0.5 on real steps
    with pytest.raises(ValueError, match="needs an rng"):
        elmo_mix(params, layers, bilm_mask, train=True)

    def loss(p):
        return sum(jnp.sum(r**2) for r in elmo_apply(p, config, ids)[0])

    grads = jax.jit(jax.grad(loss))(params)
    assert np.abs(np.asarray(grads["scalar_mix_0"]["scalar_parameters"])).sum() > 0
    assert not np.asarray(grads["bilm"]["lstm"]["layer_0"]["w_x"]).any()  # frozen by default
