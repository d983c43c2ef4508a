"""The AWD-LSTM language-model training step: ours, PyTorch's, FLOPs, compilations per epoch.

* ours: `ulmfit_jax.stages.lm_steps.make_lm_train_step` with `ulmfit_jax.make_optimizer` (fastai's
  Adam, one-cycle schedule), the step the training program runs;
* PyTorch: the same model built from `torch.nn.LSTM`'s kernel (`torch._VF.lstm`, the call
  `nn.LSTM` makes) with fastai's weight, embedding and locked dropouts, AR/TAR, Adam;
* FLOPs per token: the matmuls, forward times 3 (forward + backward).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmarks import bench_common as _common
from benchmarks.bench_torch_awd import locked_dropout, make_encoder

UNIT = "tokens/s"
REFERENCE = "torch nn.LSTM"
TORCH_VARIANTS = (REFERENCE,)
# `nn.LSTM`'s own call, without fastai's weight dropout (benchmarks.gpu_check adds it).
NO_WEIGHT_DROPOUT = "torch nn.LSTM, no weight dropout"
TORCH_EXTRA_VARIANTS = (NO_WEIGHT_DROPOUT,)

SIZES = {
    # The shape measured in ../shared/STACK_NOTES.md.
    "small": dict(vocab=10_000, emb=400, hid=1152, layers=3, batch=32, bptt=70),
    # fastai's full size as issue 7 specifies it.
    "full": dict(vocab=60_000, emb=400, hid=1152, layers=3, batch=64, bptt=72),
    # For tests and --quick (batch 8: the tests simulate 8 devices and split the batch).
    "tiny": dict(vocab=200, emb=16, hid=32, layers=3, batch=8, bptt=8),
}


def layer_sizes(size: dict) -> list[tuple[int, int]]:
    """`(input, hidden)` of each LSTM layer: the last maps back to the embedding size."""
    dims = []
    for layer in range(size["layers"]):
        n_in = size["emb"] if layer == 0 else size["hid"]
        n_out = size["emb"] if layer == size["layers"] - 1 else size["hid"]
        dims.append((n_in, n_out))
    return dims


def lstm_forward_flops(size: dict) -> float:
    """Matmul FLOPs of the LSTM stack on one token, forward only (2 per multiply-add)."""
    return float(sum(2 * 4 * n_out * (n_in + n_out) for n_in, n_out in layer_sizes(size)))


def items_per_step(size: dict) -> int:
    return size["batch"] * size["bptt"]


def flops_per_item(size: dict) -> float:
    """Training FLOPs per token: (LSTMs + tied decoder) forward, times 3 for the backward."""
    return 3 * (lstm_forward_flops(size) + 2 * size["emb"] * size["vocab"])


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------


def _config(size: dict, impl: str, dtype: str | None):
    import ulmfit_jax

    kwargs = {}
    if dtype not in (None, "float32"):
        kwargs["compute_dtype"] = dtype  # only offered when AWDLSTMConfig has the field
    return ulmfit_jax.AWDLSTMConfig(
        vocab_size=size["vocab"],
        emb_sz=size["emb"],
        n_hid=size["hid"],
        n_layers=size["layers"],
        lstm_impl=impl,
        **kwargs,
    )


def make_step(size: dict, impl: str = "custom_vjp", dtype: str | None = None):
    """The library's jitted LM train step and a fresh train state for `size`."""
    import jax

    import ulmfit_jax
    from ulmfit_jax.core.runner.train_state import create_train_state
    from ulmfit_jax.stages import lm_steps as lm_training

    config = _config(size, impl, dtype)
    params = ulmfit_jax.init_lm_params(jax.random.key(0), config)
    labels = ulmfit_jax.lm_param_groups(params)
    optimizer = ulmfit_jax.make_optimizer(labels, lr=1e-3, total_steps=1000)
    state = create_train_state(
        params, optimizer, seed=0, lstm_state=ulmfit_jax.zero_state(config, size["batch"])
    )
    step = lm_training.make_lm_train_step(config, optimizer)
    return step, state, ulmfit_jax.trainable_groups(labels)


def measure_jax(size: dict, variant: str, steps: int) -> dict:
    """Time the train step on random tokens; `variant` is "jax IMPL [DTYPE]"."""
    import jax.numpy as jnp

    from ulmfit_jax.batching.lm_stream import LMBatch

    _, impl, *dtype = variant.split()
    step, state, trainable = make_step(size, impl, dtype[0] if dtype else None)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, size["vocab"], (size["batch"], size["bptt"] + 1), dtype=np.int32)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    lengths = jnp.full((size["batch"],), size["bptt"], jnp.int32)
    batch = LMBatch(x, y, lengths, size["bptt"], 1.0, trainable)
    return _common.time_train_step(step, state, batch, steps)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def measure_torch(size: dict, variant: str, steps: int, device: str = "cpu") -> dict:
    """fastai's AWD-LSTM LM step in PyTorch (see the module docstring)."""
    from ulmfit_jax.models.awd_lstm import LM_DROPOUTS as p

    torch, dev = _common.torch_setup(device)
    vocab, batch, bptt = size["vocab"], size["batch"], size["bptt"]
    encoder = make_encoder(
        torch, dev, vocab, size["emb"], layer_sizes(size),
        weight_dropout=variant != NO_WEIGHT_DROPOUT,
    )  # fmt: skip
    dec_bias = torch.nn.Parameter(torch.zeros(vocab, device=dev))
    opt = torch.optim.Adam(encoder.parameters() + [dec_bias], lr=1e-3, betas=(0.7, 0.99), eps=1e-5)
    tokens = torch.randint(0, vocab, (batch, bptt + 1), device=dev)
    hidden = encoder.zero_hidden(batch)

    def loss_of_step():
        nonlocal hidden
        raw, hidden = encoder(tokens[:, :-1], hidden, p)
        dropped = locked_dropout(raw, p["output_p"])
        logits = dropped @ encoder.emb.t() + dec_bias
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].flatten())
        return loss + _common.ar_tar(dropped, raw)

    return _common.time_torch_train_step(loss_of_step, opt, device, steps)


# --------------------------------------------------------------------------------------------
# Compilations over an epoch of variable-length BPTT windows
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EpochSpec:
    n_tokens: int = 640_000
    batch: int = 64
    bptt: int = 70


QUICK_EPOCH = EpochSpec(n_tokens=6_000, batch=8, bptt=16)


def epoch_compilations(spec: EpochSpec = EpochSpec()) -> dict:
    """Run the real LM train step (tiny model) over one epoch of `LMStream(variable_bptt=True)`
    and count its compilations against the epoch's distinct padded widths."""
    from ulmfit_jax.batching.lm_stream import LMStream

    size = dict(SIZES["tiny"], batch=spec.batch, bptt=spec.bptt)
    step, state, trainable = make_step(size)
    rng = np.random.default_rng(0)
    docs = np.split(rng.integers(2, size["vocab"], spec.n_tokens, dtype=np.int32), 50)
    stream = LMStream(docs, batch_size=spec.batch, bptt=spec.bptt, variable_bptt=True, seed=0)
    return _common.epoch_compilations(
        f"LM, variable BPTT {spec.bptt}, batch {spec.batch}",
        step,
        lambda state, batch: step(state, batch._replace(trainable=trainable)),  # as in training
        state,
        stream.epoch_batches(0),
    )
