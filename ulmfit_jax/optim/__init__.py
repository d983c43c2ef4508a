"""ULMFiT's optimisation: fastai's Adam with discriminative learning rates, STLR or 1cycle and
gradual unfreezing (`optimizer`), fastai's layer groups (`param_groups`), the schedules
(`schedules`) and the learning-rate finder (`lr_find`).

`from ulmfit_jax import optim` gives the optimiser's public functions (`optim.make_optimizer`,
`optim.new_stage`, `optim.trainable_groups`, ...).
"""

from ulmfit_jax.optim.optimizer import (
    SCHEDULES,
    LeafRoles,
    OptimizerState,
    clip_grad_norm,
    fastai_adam,
    fastai_leaf_roles,
    hyperparams,
    make_optimizer,
    new_stage,
    trainable_groups,
)

__all__ = [
    "SCHEDULES",
    "LeafRoles",
    "OptimizerState",
    "clip_grad_norm",
    "fastai_adam",
    "fastai_leaf_roles",
    "hyperparams",
    "make_optimizer",
    "new_stage",
    "trainable_groups",
]
