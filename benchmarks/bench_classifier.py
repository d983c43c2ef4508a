"""The ULMFiT classifier training step: ours, PyTorch's, FLOPs, compilations per epoch.

The step trains fastai's `get_text_classifier` on a batch of documents of one padded width:
BPT3C (chunks of `bptt` with the state carried and detached between chunks, outputs kept for
the last `max_len` tokens), masked concat pooling, the BatchNorm/Dropout/Linear head, cross-
entropy plus AR/TAR, Adam.

* ours: `ulmfit_jax.stages.classifier_steps.make_classifier_train_step` with
  `ulmfit_jax.make_optimizer`, the step the training program runs;
* PyTorch: the same computation from `torch.nn.LSTM`'s kernel with fastai's dropouts, one call
  per chunk as fastai's `SentenceEncoder` makes. Its recurrence runs over the padding too (as
  fastai's does) and masks it in the pooling: the same FLOPs as ours.
* FLOPs per document: the LSTM matmuls over the padded width and the head, forward times 3.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmarks import bench_common as _common
from benchmarks.bench_lm import layer_sizes, lstm_forward_flops
from benchmarks.bench_torch_awd import make_encoder

UNIT = "docs/s"
REFERENCE = "torch nn.LSTM"
TORCH_VARIANTS = (REFERENCE,)
# `nn.LSTM`'s own call, without fastai's weight dropout (benchmarks.gpu_check adds it).
NO_WEIGHT_DROPOUT = "torch nn.LSTM, no weight dropout"
TORCH_EXTRA_VARIANTS = (NO_WEIGHT_DROPOUT,)

SIZES = {
    # Same encoder as the LM's small size, short documents (two BPT3C chunks).
    "small": dict(
        vocab=10_000, emb=400, hid=1152, layers=3, batch=32, bptt=72, max_len=1440, width=144
    ),
    # fastai's classifier (batch 64, bptt 72, max_len 1440) on IMDb-length reviews: six chunks.
    "full": dict(
        vocab=60_000, emb=400, hid=1152, layers=3, batch=64, bptt=72, max_len=1440, width=432
    ),
    "tiny": dict(vocab=200, emb=16, hid=32, layers=3, batch=8, bptt=8, max_len=32, width=16),
}
HEAD = (50,)  # fastai's lin_ftrs
N_CLASS = 2


def items_per_step(size: dict) -> int:
    return size["batch"]


def head_forward_flops(size: dict) -> float:
    dims = [3 * size["emb"], *HEAD, N_CLASS]
    return float(sum(2 * a * b for a, b in zip(dims[:-1], dims[1:], strict=True)))


def flops_per_item(size: dict) -> float:
    """Training FLOPs per document: (LSTMs over the padded width + head) forward, times 3."""
    return 3 * (lstm_forward_flops(size) * size["width"] + head_forward_flops(size))


def document_lengths(size: dict, seed: int = 0) -> np.ndarray:
    """int32[batch]: lengths that pad to `width` (the last chunk partly filled)."""
    rng = np.random.default_rng(seed)
    low = max(size["width"] - size["bptt"] + 1, 1)
    return rng.integers(low, size["width"] + 1, size["batch"]).astype(np.int32)


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------


def make_step(size: dict, impl: str = "custom_vjp", dtype: str | None = None):
    """The library's jitted classifier train step and a fresh train state for `size`."""
    import jax

    import ulmfit_jax
    from ulmfit_jax.core.runner.train_state import create_train_state
    from ulmfit_jax.stages import classifier_steps as classifier_training

    kwargs = {} if dtype in (None, "float32") else {"compute_dtype": dtype}
    config = ulmfit_jax.ClassifierConfig(
        vocab_size=size["vocab"],
        n_class=N_CLASS,
        emb_sz=size["emb"],
        n_hid=size["hid"],
        n_layers=size["layers"],
        lin_ftrs=HEAD,
        bptt=size["bptt"],
        max_len=size["max_len"],
        lstm_impl=impl,
        **kwargs,
    )
    params = ulmfit_jax.init_classifier_params(jax.random.key(0), config)
    labels = ulmfit_jax.classifier_param_groups(params)
    optimizer = ulmfit_jax.make_optimizer(labels, lr=1e-3, total_steps=1000)
    state = create_train_state(params, optimizer, seed=0)
    step = classifier_training.make_classifier_train_step(config, optimizer)
    return step, state, ulmfit_jax.trainable_groups(labels)


def _batch(size: dict):
    rng = np.random.default_rng(1)
    lengths = document_lengths(size)
    tokens = np.ones((size["batch"], size["width"]), np.int32)  # fastai's pad id
    for row, n in enumerate(lengths):
        tokens[row, :n] = rng.integers(2, size["vocab"], n)
    labels = rng.integers(0, N_CLASS, size["batch"]).astype(np.int32)
    return tokens, lengths, labels


def measure_jax(size: dict, variant: str, steps: int) -> dict:
    """Time the train step on one batch of random documents; `variant` is "jax IMPL [DTYPE]"."""
    import jax.numpy as jnp

    from ulmfit_jax.batching.classifier_batches import ClassifierBatch

    _, impl, *dtype = variant.split()
    step, state, trainable = make_step(size, impl, dtype[0] if dtype else None)
    tokens, lengths, labels = (jnp.asarray(a) for a in _batch(size))
    indices = jnp.arange(size["batch"], dtype=jnp.int32)
    batch = ClassifierBatch(tokens, lengths, labels, indices, trainable)
    return _common.time_train_step(step, state, batch, steps)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def measure_torch(size: dict, variant: str, steps: int, device: str = "cpu") -> dict:
    """fastai's classifier step in PyTorch (see the module docstring)."""
    from ulmfit_jax.models.awd_lstm import CLASSIFIER_DROPOUTS as p

    torch, dev = _common.torch_setup(device)
    F = torch.nn.functional
    dims = layer_sizes(size)
    vocab, batch, bptt, emb_sz = size["vocab"], size["batch"], size["bptt"], size["emb"]
    encoder = make_encoder(
        torch, dev, vocab, emb_sz, dims, weight_dropout=variant != NO_WEIGHT_DROPOUT
    )
    head_dims = [3 * emb_sz, *HEAD, N_CLASS]
    bns = [torch.nn.BatchNorm1d(n).to(dev) for n in head_dims[:-1]]
    lins = [
        torch.nn.Linear(a, b, bias=False).to(dev)
        for a, b in zip(head_dims[:-1], head_dims[1:], strict=True)
    ]
    head_ps = [p["output_p"]] + [0.1] * len(HEAD)
    params = encoder.parameters() + [w for m in [*bns, *lins] for w in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, betas=(0.7, 0.99), eps=1e-5)
    tokens, lengths, labels = (torch.as_tensor(a, device=dev).long() for a in _batch(size))
    n_chunks = size["width"] // bptt
    keep_from = max(n_chunks * bptt - size["max_len"], 0)  # approximate: all docs end in chunk

    def loss_of_step():
        hidden = encoder.zero_hidden(batch)
        outputs = []
        for chunk in range(n_chunks):
            x, hidden = encoder(tokens[:, chunk * bptt : (chunk + 1) * bptt], hidden, p)
            if chunk * bptt >= keep_from:
                outputs.append(x)
        out = torch.cat(outputs, dim=1)
        start = size["width"] - out.size(1)
        mask = (torch.arange(start, size["width"], device=dev)[None] < lengths[:, None])[..., None]
        last = out[torch.arange(batch, device=dev), lengths - 1 - start]
        max_pool = out.masked_fill(~mask, float("-inf")).max(dim=1).values
        avg_pool = out.masked_fill(~mask, 0.0).sum(dim=1) / mask.sum(dim=1)
        x = torch.cat([last, max_pool, avg_pool], dim=-1)
        for k, (bn, lin) in enumerate(zip(bns, lins, strict=True)):
            x = lin(F.dropout(bn(x), head_ps[k]))
            if k != len(lins) - 1:
                x = F.relu(x)
        return F.cross_entropy(x, labels) + _common.ar_tar(out, out)

    return _common.time_torch_train_step(loss_of_step, opt, device, steps)


# --------------------------------------------------------------------------------------------
# Compilations over an epoch of real-length-distributed batches
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EpochSpec:
    """A synthetic corpus with IMDb-like lengths (fastai tokens: median ~220, long tail)."""

    n_docs: int = 1_600
    batch: int = 64
    bptt: int = 72
    max_len: int = 1440
    median_length: float = 220.0
    sigma: float = 0.75
    max_length: int = 3_000


QUICK_EPOCH = EpochSpec(n_docs=40, batch=8, bptt=8, max_len=32, median_length=12, max_length=60)


def epoch_compilations(spec: EpochSpec = EpochSpec()) -> dict:
    """Run the real classifier train step (tiny model) over one epoch of `ClassifierBatches`
    (fastai's SortedDL order) and count its compilations against the distinct padded widths."""
    from ulmfit_jax.batching.classifier_batches import ClassifierBatches

    size = dict(SIZES["tiny"], batch=spec.batch, bptt=spec.bptt, max_len=spec.max_len)
    step, state, trainable = make_step(size)
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(np.log(spec.median_length), spec.sigma, spec.n_docs)
    lengths = np.clip(lengths.astype(int), 1, spec.max_length)
    docs = [rng.integers(2, size["vocab"], n, dtype=np.int32) for n in lengths]
    labels = rng.integers(0, N_CLASS, spec.n_docs)
    batches = ClassifierBatches(docs, labels, batch_size=spec.batch, seed=0, pad_multiple=spec.bptt)
    tally = {"real": 0, "positions": 0}

    def count_tokens(batch):
        """How much of the padded batches is real text (the rest is padding to `bptt`)."""
        tally["real"] += int(batch.lengths[batch.indices >= 0].sum())
        tally["positions"] += batch.tokens.size

    result = _common.epoch_compilations(
        f"classifier, SortedDL batches of {spec.batch}, bptt {spec.bptt}",
        step,
        lambda state, batch: step(state, batch._replace(trainable=trainable)),  # as in training
        state,
        batches.epoch_batches(0),
        on_batch=count_tokens,
    )
    return {**result, "real_fraction": tally["real"] / tally["positions"]}
