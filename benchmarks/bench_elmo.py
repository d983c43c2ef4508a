"""ELMo embedding (inference): ours, PyTorch's, FLOPs per token.

* ours: `jax.jit(elmo_jax.bilm_apply)` (character CNN, highway, projection, the stacked biLSTM
  with projection and clipping, all three layers out) on random weights from `elmo_jax.init_bilm`
  in a released model's shape;
* PyTorch, two ways, both under `torch.no_grad()`:
  - "torch nn.LSTM": the char CNN from `Conv1d`/`Linear` and each direction's layers as
    `nn.LSTM(proj_size=...)` (the fused kernel; it cannot clip the cell or the projection, which
    are elementwise and cheap, so this is the fastest PyTorch can do);
  - "torch loop (AllenNLP)": the LSTM as AllenNLP's `LstmCellWithProjection` runs it, a Python
    loop over time with the input and state linearities, cell and projection clipping.
* FLOPs per token: every matmul and convolution of the forward pass over the `T + 2` steps
  (`<S>` and `</S>` included), divided by the `T` sentence tokens that are counted.
"""

from __future__ import annotations

import numpy as np

from benchmarks import bench_common as _common

UNIT = "tokens/s"
REFERENCE = "torch nn.LSTM"
TORCH_VARIANTS = (REFERENCE, "torch loop (AllenNLP)")

SIZES = {
    # elmo_2x4096_512_2048cnn_2xhighway, AllenNLP's default batch of sentences.
    "original": dict(preset="original", batch=32, length=20),
    # elmo_2x1024_128_2048cnn_1xhighway.
    "small": dict(preset="small", batch=32, length=20),
    "tiny": dict(
        config=dict(filters=((1, 4), (2, 8)), n_highway=1, dim=32, projection_dim=8),
        batch=2,
        length=5,
    ),
}


def bilm_config(size: dict):
    from elmo_jax.model.config import BiLMConfig, preset

    return preset(size["preset"]) if "preset" in size else BiLMConfig(**size["config"])


def items_per_step(size: dict) -> int:
    return size["batch"] * size["length"]


def step_flops(config) -> float:
    """Forward FLOPs of one time step (one token through the char CNN and both directions)."""
    m, e = config.max_characters_per_token, config.char_embed_dim
    f, p, c = config.n_filters, config.projection_dim, config.dim
    cnn = sum(2 * (m - w + 1) * w * e * n for w, n in config.filters)
    cnn += config.n_highway * 2 * (2 * f * f)
    cnn += 2 * f * p if config.has_cnn_projection else 0
    # Per direction and layer: input and recurrent halves of the gates, then the projection.
    lstm = 2 * (p * 4 * c + p * 4 * c) + (2 * c * p if config.has_lstm_projection else 0)
    return float(cnn + config.n_layers * 2 * lstm)


def flops_per_item(size: dict) -> float:
    """Inference FLOPs per sentence token (boundary steps charged to the sentence's tokens)."""
    length = size["length"]
    return step_flops(bilm_config(size)) * (length + 2) / length


def sentences(size: dict, seed: int = 0) -> list[list[str]]:
    """`batch` sentences of exactly `length` random lowercase words of 2-10 letters."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 11))) for _ in range(2000)]
    return [
        [vocab[i] for i in rng.integers(0, len(vocab), size["length"])]
        for _ in range(size["batch"])
    ]


def measure_jax(size: dict, variant: str, steps: int) -> dict:
    import jax

    import elmo_jax

    config = bilm_config(size)
    params = elmo_jax.init_bilm(jax.random.key(0), config)
    ids = jax.numpy.asarray(elmo_jax.batch_to_ids(sentences(size)))
    apply = jax.jit(elmo_jax.bilm_apply, static_argnums=1)
    return _common.time_steps(lambda: jax.block_until_ready(apply(params, config, ids)), steps)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def _torch_char_cnn(torch, config, dev):
    nn = torch.nn
    cnn = nn.ModuleDict(
        {
            "embed": nn.Embedding(config.n_characters, config.char_embed_dim, padding_idx=0),
            "convs": nn.ModuleList(
                [nn.Conv1d(config.char_embed_dim, n, w) for w, n in config.filters]
            ),
            "highways": nn.ModuleList(
                [nn.Linear(config.n_filters, 2 * config.n_filters) for _ in range(config.n_highway)]
            ),
        }
    )
    if config.has_cnn_projection:
        cnn["proj"] = nn.Linear(config.n_filters, config.projection_dim)
    cnn = cnn.to(dev)

    def apply(char_ids):  # [B, T, chars] -> [B, T, P], as AllenNLP's _ElmoCharacterEncoder
        b, t, m = char_ids.shape
        x = cnn["embed"](char_ids.reshape(b * t, m)).transpose(1, 2)  # [N, E, chars]
        h = torch.cat([torch.relu(conv(x).max(dim=-1).values) for conv in cnn["convs"]], dim=-1)
        for hw in cnn["highways"]:
            nonlinear, gate = hw(h).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            h = gate * h + (1 - gate) * torch.relu(nonlinear)
        if config.has_cnn_projection:
            h = cnn["proj"](h)
        return h.reshape(b, t, -1)

    return apply


def _torch_lstm_fused(torch, config, dev):
    proj = config.projection_dim if config.has_lstm_projection else 0
    stacks = [
        [
            torch.nn.LSTM(config.projection_dim, config.dim, proj_size=proj, batch_first=True).to(
                dev
            )
            for _ in range(config.n_layers)
        ]
        for _ in range(2)
    ]

    def apply(x):  # every sentence is full length here, so the backward input is a flip
        layers = []
        for direction, stack in enumerate(stacks):
            h = x if direction == 0 else x.flip(1)
            outs = []
            for layer, lstm in enumerate(stack):
                y, _ = lstm(h)
                h = y + h if config.use_skip_connections and layer > 0 else y
                outs.append(h if direction == 0 else h.flip(1))
            layers.append(outs)
        return [torch.cat(pair, dim=-1) for pair in zip(*layers, strict=True)]

    return apply


def _torch_lstm_loop(torch, config, dev):
    """AllenNLP's `LstmCellWithProjection`, one per direction and layer."""
    nn = torch.nn
    c_dim, p_dim = config.dim, config.projection_dim
    cells = [
        [
            nn.ModuleDict(
                {
                    "input": nn.Linear(p_dim, 4 * c_dim, bias=False),
                    "state": nn.Linear(p_dim, 4 * c_dim, bias=True),
                    "proj": nn.Linear(c_dim, p_dim, bias=False),
                }
            ).to(dev)
            for _ in range(config.n_layers)
        ]
        for _ in range(2)
    ]

    def run_cell(cell, x):
        b, t, _ = x.shape
        h = x.new_zeros(b, p_dim)
        c = x.new_zeros(b, c_dim)
        out = []
        for step in range(t):
            z = cell["input"](x[:, step]) + cell["state"](h)
            i, f, g, o = z.chunk(4, dim=-1)
            c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c
            if config.cell_clip:
                c = c.clamp(-config.cell_clip, config.cell_clip)
            h = cell["proj"](torch.sigmoid(o) * torch.tanh(c))
            if config.proj_clip:
                h = h.clamp(-config.proj_clip, config.proj_clip)
            out.append(h)
        return torch.stack(out, dim=1)

    def apply(x):
        layers = []
        for direction, stack in enumerate(cells):
            h = x if direction == 0 else x.flip(1)
            outs = []
            for layer, cell in enumerate(stack):
                y = run_cell(cell, h)
                h = y + h if config.use_skip_connections and layer > 0 else y
                outs.append(h if direction == 0 else h.flip(1))
            layers.append(outs)
        return [torch.cat(pair, dim=-1) for pair in zip(*layers, strict=True)]

    return apply


def measure_torch(size: dict, variant: str, steps: int, device: str = "cpu") -> dict:
    from elmo_jax.model.characters import BOS_TOKEN, EOS_TOKEN, batch_to_ids

    torch, dev = _common.torch_setup(device)
    config = bilm_config(size)
    char_cnn = _torch_char_cnn(torch, config, dev)
    lstm = (_torch_lstm_fused if variant == REFERENCE else _torch_lstm_loop)(torch, config, dev)
    with_boundaries = [[BOS_TOKEN, *s, EOS_TOKEN] for s in sentences(size)]
    ids = torch.as_tensor(batch_to_ids(with_boundaries), device=dev).long()

    def one():
        with torch.no_grad():
            x = char_cnn(ids)
            layers = [torch.cat([x, x], dim=-1), *lstm(x)]
        _common.torch_sync(device)
        return layers

    return _common.time_steps(one, steps)
