"""fastai's AWD-LSTM encoder and language model (`AWD_LSTM`, `get_language_model`), functionally.

Parameters are a plain nested dict:

    {
      "encoder": {
        "embedding": float[vocab, emb_sz],
        "lstm_0": {"w_ih", "w_hh", "bias"},     # see ulmfit_jax.core.nn.lstm for the layout
        ...,
        "lstm_{n_layers-1}": {...},              # the last layer maps back to emb_sz
      },
      "decoder": {"bias": float[vocab]}          # + "weight": float[vocab, emb_sz] if untied
    }

The recurrent state is an explicit input and output: a tuple with one `(h, c)` pair per layer,
`float[batch, layer_out]` each, so consecutive windows of a stream continue each other.

Regularisation follows fastai exactly (each applied only when `train=True`):

* embedding dropout drops whole words: one Bernoulli mask over vocabulary rows per call;
* variational ("locked") dropout on the embedded input, between layers and on the output: one
  mask per sequence and feature, shared over time;
* weight dropout (DropConnect) on each layer's hidden-to-hidden matrix, one mask per call,
  applied before the scan so every step sees the same dropped matrix;
* AR and TAR on the last layer's dropped and raw outputs (`ar_tar_penalty`).

`compute_dtype="bfloat16"` is mixed precision (`ulmfit_jax.core.nn.precision`): the LSTM and decoder
matmuls take bfloat16 operands and accumulate in float32; parameters, dropout, the recurrent
state, the LSTM outputs and the logits stay float32.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ulmfit_jax.core.nn import lstm, precision
from ulmfit_jax.models.validation import check_lengths, check_state, check_tokens

State = tuple[lstm.Carry, ...]

# fastai's `awd_lstm_lm_config` and `awd_lstm_clas_config` dropout presets (before drop_mult).
LM_DROPOUTS = dict(output_p=0.1, hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2)
CLASSIFIER_DROPOUTS = dict(output_p=0.4, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5)


@dataclasses.dataclass(frozen=True)
class AWDLSTMConfig:
    """Hyperparameters of fastai's AWD-LSTM language model; defaults are fastai's.

    `drop_mult` scales every dropout probability, as fastai's `get_language_model` does; the
    `*_p` fields hold the unscaled values and the `*_prob` properties the effective ones.
    `compute_dtype` is "float32" or "bfloat16" (mixed precision; dtype objects are accepted and
    stored by name).
    """

    vocab_size: int
    emb_sz: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    pad_token: int = 1
    output_p: float = LM_DROPOUTS["output_p"]
    hidden_p: float = LM_DROPOUTS["hidden_p"]
    input_p: float = LM_DROPOUTS["input_p"]
    embed_p: float = LM_DROPOUTS["embed_p"]
    weight_p: float = LM_DROPOUTS["weight_p"]
    drop_mult: float = 1.0
    tie_weights: bool = True
    out_bias: bool = True
    lstm_impl: str = "custom_vjp"
    compute_dtype: str = precision.FLOAT32

    def __post_init__(self):
        object.__setattr__(self, "compute_dtype", precision.canonical_dtype(self.compute_dtype))
        for name in ("vocab_size", "emb_sz", "n_hid", "n_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"AWDLSTMConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.pad_token < self.vocab_size:
            raise ValueError(f"pad_token {self.pad_token} outside vocabulary of {self.vocab_size}")
        for name in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p"):
            p = getattr(self, name) * self.drop_mult
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} * drop_mult = {p} is not a probability in [0, 1)")

    def prob(self, name: str) -> float:
        """Effective dropout probability of `name` (e.g. "hidden_p") after `drop_mult`."""
        return getattr(self, name) * self.drop_mult

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """`(input_size, hidden_size)` of each LSTM layer; the last maps back to `emb_sz`."""
        sizes = []
        for layer in range(self.n_layers):
            n_in = self.emb_sz if layer == 0 else self.n_hid
            n_out = self.emb_sz if layer == self.n_layers - 1 else self.n_hid
            sizes.append((n_in, n_out))
        return sizes


class LMOutputs(NamedTuple):
    """Everything one language-model call produces.

    logits: float32[batch, time, vocab].
    state: the new recurrent state (gradient stopped, as fastai detaches it).
    raw_output: float[batch, time, emb_sz], the last LSTM layer's output (TAR uses it).
    dropped_output: the same after output dropout (AR uses it; equals raw when not training).
    """

    logits: jax.Array
    state: State
    raw_output: jax.Array
    dropped_output: jax.Array


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def init_encoder_params(rng: jax.Array, config: AWDLSTMConfig) -> dict[str, Any]:
    """fastai's initialisation: embedding uniform(-0.1, 0.1), LSTMs as PyTorch's `nn.LSTM`."""
    keys = jax.random.split(rng, config.n_layers + 1)
    params = {
        "embedding": jax.random.uniform(
            keys[0], (config.vocab_size, config.emb_sz), jnp.float32, -0.1, 0.1
        )
    }
    for layer, (n_in, n_out) in enumerate(config.layer_sizes):
        params[f"lstm_{layer}"] = lstm.init_lstm_params(keys[layer + 1], n_in, n_out)
    return params


def init_lm_params(rng: jax.Array, config: AWDLSTMConfig) -> dict[str, Any]:
    """Parameters of a fresh language model (tied decoder with a zero bias by default)."""
    enc_key, dec_key = jax.random.split(rng)
    params = {"encoder": init_encoder_params(enc_key, config), "decoder": {}}
    if not config.tie_weights:
        params["decoder"]["weight"] = jax.random.uniform(
            dec_key, (config.vocab_size, config.emb_sz), jnp.float32, -0.1, 0.1
        )
    if config.out_bias:
        params["decoder"]["bias"] = jnp.zeros((config.vocab_size,), jnp.float32)
    return params


def zero_state(config: AWDLSTMConfig, batch: int, dtype=jnp.float32) -> State:
    """The all-zero recurrent state for `batch` rows."""
    return tuple(lstm.zero_carry(batch, n_out, dtype) for _, n_out in config.layer_sizes)


# --------------------------------------------------------------------------------------------
# Dropout helpers (fastai semantics: keep with probability 1 - p, scale kept values by 1/(1-p))
# --------------------------------------------------------------------------------------------


def check_window(
    config: AWDLSTMConfig,
    tokens: jax.Array,
    state: State | None,
    lengths: jax.Array | None = None,
) -> tuple[jax.Array, State, jax.Array | None]:
    """The checked inputs of one window, as `encoder_apply` takes them.

    Args:
      config: the model's `AWDLSTMConfig`.
      tokens: int32[batch, time], ids in `[0, vocab_size)`.
      state: one `(h, c)` per layer, float[batch, layer_out] each; None for zeros.
      lengths: int32[batch] real lengths of right-padded rows, or None.

    Returns:
      `(tokens, state, lengths)`, with `zero_state` for a None state.

    Raises:
      ValueError: a token outside the vocabulary, or a state or lengths of the wrong shape.
    """
    tokens = check_tokens(tokens, config.vocab_size)
    if lengths is not None:
        lengths = check_lengths(lengths, tokens.shape)
    batch = tokens.shape[0]
    if state is None:
        return tokens, zero_state(config, batch), lengths
    return tokens, check_state(state, [(batch, n_out) for _, n_out in config.layer_sizes]), lengths


def dropout_mask(rng: jax.Array, shape: tuple[int, ...], p: float, dtype=jnp.float32):
    """A multiplicative mask: 0 with probability p, else 1/(1-p)."""
    keep = jax.random.bernoulli(rng, 1.0 - p, shape)
    return keep.astype(dtype) / (1.0 - p)


def locked_dropout(rng: jax.Array | None, x: jax.Array, p: float) -> jax.Array:
    """fastai's `RNNDropout`: one mask per (sequence, feature), shared over time.

    x: float[batch, time, features].
    """
    if rng is None or p == 0.0:
        return x
    return x * dropout_mask(rng, (x.shape[0], 1, x.shape[2]), p, x.dtype)


# --------------------------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------------------------


def embed_tokens(
    embedding: jax.Array, tokens: jax.Array, config: AWDLSTMConfig, rng: jax.Array | None
) -> jax.Array:
    """Look tokens up, with fastai's `EmbeddingDropout` when `rng` is given.

    fastai multiplies the whole `[vocab, emb]` matrix by a `[vocab, 1]` mask and then gathers;
    gathering first and multiplying by the gathered mask gives the same numbers far cheaper.
    As with `nn.Embedding(padding_idx=pad)`, the padding row receives no gradient.
    """
    emb = jnp.take(embedding, tokens, axis=0)
    emb = jnp.where((tokens == config.pad_token)[..., None], jax.lax.stop_gradient(emb), emb)
    p = config.prob("embed_p")
    if rng is not None and p > 0.0:
        row_mask = dropout_mask(rng, (embedding.shape[0],), p, emb.dtype)
        emb = emb * jnp.take(row_mask, tokens, axis=0)[..., None]
    return emb


def encoder_apply(
    params: dict[str, Any],
    config: AWDLSTMConfig,
    tokens: jax.Array,
    state: State,
    *,
    lengths: jax.Array | None = None,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, State]:
    """fastai's `AWD_LSTM.forward` on one window, without input checks (callers check).

    Args:
      params: the "encoder" subtree.
      tokens: int32[batch, time].
      state: one `(h, c)` per layer.
      lengths: int32[batch] real lengths for right-padded rows (None: all full). Padded steps
        leave the state unchanged and produce zero outputs.
      rng: dropout randomness; None means evaluation (no dropout).

    Returns:
      `(output, new_state)`: output float[batch, time, emb_sz] is the last layer's raw output
      (before output dropout); new_state is not gradient-stopped here.
    """
    train = rng is not None
    dtype = precision.compute_dtype(config.compute_dtype)
    keys = (
        jax.random.split(rng, 2 + 2 * config.n_layers)
        if train
        else [None] * (2 + 2 * config.n_layers)
    )
    x = embed_tokens(params["embedding"], tokens, config, keys[0])
    x = locked_dropout(keys[1], x, config.prob("input_p"))
    new_state = []
    for layer in range(config.n_layers):
        layer_params = dict(params[f"lstm_{layer}"])
        weight_key, hidden_key = keys[2 + 2 * layer], keys[3 + 2 * layer]
        if train and config.prob("weight_p") > 0.0:
            w_hh = layer_params["w_hh"]
            layer_params["w_hh"] = w_hh * dropout_mask(
                weight_key, w_hh.shape, config.prob("weight_p"), w_hh.dtype
            )
        x, carry = lstm.lstm_layer(
            layer_params,
            x,
            state[layer],
            lengths=lengths,
            impl=config.lstm_impl,
            compute_dtype=dtype,
        )
        new_state.append(carry)
        if layer != config.n_layers - 1:
            x = locked_dropout(hidden_key, x, config.prob("hidden_p"))
    return x, tuple(new_state)


def decode(params: dict[str, Any], config: AWDLSTMConfig, hidden: jax.Array) -> jax.Array:
    """fastai's `LinearDecoder` (after its dropout): float[..., emb_sz] -> float32[..., vocab].

    In bfloat16 the hidden states and the (tied) weight enter the matmul as bfloat16 and the
    logits accumulate in float32, so the softmax and the loss see float32 logits.
    """
    decoder = params["decoder"]
    weight = decoder["weight"] if "weight" in decoder else params["encoder"]["embedding"]
    dtype = precision.compute_dtype(config.compute_dtype)
    logits = precision.einsum("...e,ve->...v", hidden, weight, dtype)
    if "bias" in decoder:
        logits = logits + decoder["bias"]
    return logits.astype(jnp.float32)


def lm_forward(
    params: dict[str, Any],
    config: AWDLSTMConfig,
    tokens: jax.Array,
    state: State | None = None,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
    lengths: jax.Array | None = None,
) -> LMOutputs:
    """The language model with every intermediate a training step needs (see `LMOutputs`)."""
    tokens, state, lengths = check_window(config, tokens, state, lengths)
    if train and rng is None:
        raise ValueError("lm_apply(train=True) needs an rng for dropout")
    return _lm_forward(params, config, tokens, state, rng if train else None, lengths)


@functools.partial(jax.jit, static_argnums=1)
def _lm_forward(params, config: AWDLSTMConfig, tokens, state, rng, lengths=None) -> LMOutputs:
    """The checked-input core of `lm_forward`, compiled once per config and shape (and inlined
    when the caller is itself jitted)."""
    enc_rng, out_rng = jax.random.split(rng) if rng is not None else (None, None)
    raw, new_state = encoder_apply(
        params["encoder"], config, tokens, state, lengths=lengths, rng=enc_rng
    )
    dropped = locked_dropout(out_rng, raw, config.prob("output_p"))
    logits = decode(params, config, dropped)
    return LMOutputs(logits, jax.lax.stop_gradient(new_state), raw, dropped)


def lm_apply(
    params: dict[str, Any],
    config: AWDLSTMConfig,
    tokens: jax.Array,
    state: State | None = None,
    *,
    train: bool = False,
    rng: jax.Array | None = None,
    lengths: jax.Array | None = None,
) -> tuple[jax.Array, State]:
    """Run the AWD-LSTM language model on one window of a token stream.

    Args:
      params: see the module docstring (`init_lm_params` or `load_fastai_lm`).
      config: the model's `AWDLSTMConfig`.
      tokens: int32[batch, time], ids in `[0, vocab_size)`.
      state: the state returned by the previous window of the same stream, or None for zeros.
      train: apply fastai's dropouts (needs `rng`).
      rng: a `jax.random` key.
      lengths: int32[batch], for windows right-padded to a static shape (variable-length BPTT):
        steps at or past a row's length leave its state unchanged (their logits are
        meaningless and must be masked out of the loss). None means every step is real.

    Returns:
      `(logits, new_state)`: logits float32[batch, time, vocab]; new_state continues the stream
      (no gradient flows through it into the next window).
    """
    outputs = lm_forward(params, config, tokens, state, train=train, rng=rng, lengths=lengths)
    return outputs.logits, outputs.state


def ar_tar_penalty(
    raw_output: jax.Array,
    dropped_output: jax.Array,
    alpha: float = 2.0,
    beta: float = 1.0,
    mask: jax.Array | None = None,
) -> jax.Array:
    """fastai's `RNNRegularizer`: alpha * mean(dropped^2) + beta * mean((raw[t+1] - raw[t])^2).

    Args:
      raw_output, dropped_output: float[batch, time, features], the last LSTM layer's output
        before and after output dropout.
      mask: bool[batch, time] of real steps, for right-padded windows: the means then run over
        real steps (and pairs of consecutive real steps) only. None: every step is real, which
        is exactly fastai's formula.

    Apply in training only, as fastai does.
    """
    raw = raw_output.astype(jnp.float32)
    dropped = dropped_output.astype(jnp.float32)
    features = raw.shape[-1]
    penalty = jnp.float32(0.0)
    if mask is None:
        if alpha:
            penalty += alpha * jnp.mean(jnp.square(dropped))
        # fastai tests `len(h) > 1`, i.e. batch > 1; time > 1 avoids the mean of an empty array.
        if beta and raw.shape[0] > 1 and raw.shape[1] > 1:
            penalty += beta * jnp.mean(jnp.square(raw[:, 1:] - raw[:, :-1]))
        return penalty
    mask = mask.astype(jnp.float32)
    if alpha:
        total = jnp.sum(jnp.square(dropped) * mask[..., None])
        penalty += alpha * total / jnp.maximum(jnp.sum(mask) * features, 1.0)
    if beta and raw.shape[1] > 1:
        pairs = mask[:, 1:] * mask[:, :-1]
        total = jnp.sum(jnp.square(raw[:, 1:] - raw[:, :-1]) * pairs[..., None])
        penalty += beta * total / jnp.maximum(jnp.sum(pairs) * features, 1.0)
    return penalty
