"""fastai's layer groups as labels, and that optax.multi_transform accepts them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ulmfit_jax
from ulmfit_jax.optim import param_groups

LM = ulmfit_jax.AWDLSTMConfig(vocab_size=20, emb_sz=4, n_hid=6, n_layers=3)
CLS = ulmfit_jax.ClassifierConfig(vocab_size=20, n_class=2, emb_sz=4, n_hid=6, n_layers=3)


def test_lm_groups_follow_awd_lstm_lm_split():
    labels = param_groups.param_groups(ulmfit_jax.init_lm_params(jax.random.key(0), LM))
    assert labels["encoder"]["lstm_0"]["w_hh"] == "group_0"
    assert labels["encoder"]["lstm_2"]["bias"] == "group_2"
    assert labels["encoder"]["embedding"] == "group_3"
    assert labels["decoder"]["bias"] == "group_3"
    assert param_groups.group_names(labels) == ["group_0", "group_1", "group_2", "group_3"]


def test_classifier_groups_follow_awd_lstm_clas_split():
    params = ulmfit_jax.init_classifier_params(jax.random.key(0), CLS)
    labels = param_groups.param_groups(params)
    assert labels["encoder"]["embedding"] == "group_0"
    assert labels["encoder"]["lstm_0"]["w_ih"] == "group_1"
    assert labels["encoder"]["lstm_2"]["w_ih"] == "group_3"
    assert labels["head"]["layer_1"]["linear"]["kernel"] == "group_4"
    assert labels["head"]["layer_0"]["bn"]["scale"] == "group_4"
    assert labels["head"]["layer_0"]["bn"]["mean"] == param_groups.BATCH_STATS
    assert len(param_groups.group_names(labels)) == 5


def test_discriminative_learning_rates_through_multi_transform():
    params = ulmfit_jax.init_classifier_params(jax.random.key(0), CLS)
    labels = param_groups.param_groups(params)
    names = param_groups.group_names(labels)
    lr = 1.0
    transforms = {name: optax.sgd(lr / 2.6 ** (len(names) - 1 - k)) for k, name in enumerate(names)}
    transforms[param_groups.BATCH_STATS] = optax.set_to_zero()
    opt = optax.multi_transform(transforms, labels)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    assert np.allclose(updates["head"]["layer_0"]["linear"]["kernel"], -1.0)
    assert np.allclose(updates["encoder"]["embedding"], -1.0 / 2.6**4)
    assert np.allclose(updates["encoder"]["lstm_1"]["w_hh"], -1.0 / 2.6**2)
    assert np.all(updates["head"]["layer_0"]["bn"]["var"] == 0.0)
