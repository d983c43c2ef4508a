"""The biLM hyperparameters: a frozen dataclass read from (and written to) bilm-tf `options.json`.

The four released AllenNLP/bilm-tf models are embedded as presets. Their names follow the release
files, `elmo_2x{dim}_{projection_dim}_{n_filters}cnn_{n_highway}xhighway`: all share the same
character CNN (16-dim character embeddings, widths 1..7 with 32..1024 filters, 2048 in all, relu),
a 2-layer LSTM with projection, clipping at 3 and residual connections.

    >>> cfg = BiLMConfig.from_options(PRESETS["small"])
    >>> cfg.output_dim, cfg.num_output_layers
    (256, 3)
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ulmfit_jax.core.nn import precision

# The character CNN every released model uses ("2048cnn").
_RELEASED_CHAR_CNN: dict[str, Any] = {
    "activation": "relu",
    "embedding": {"dim": 16},
    "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
    "max_characters_per_token": 50,
    "n_characters": 262,
}


def _released(dim: int, projection_dim: int, n_highway: int) -> dict[str, Any]:
    return {
        "lstm": {
            "use_skip_connections": True,
            "projection_dim": projection_dim,
            "cell_clip": 3,
            "proj_clip": 3,
            "dim": dim,
            "n_layers": 2,
        },
        "char_cnn": {**_RELEASED_CHAR_CNN, "n_highway": n_highway},
    }


# options.json of the released models (allennlp.org/elmo; identical to the files on S3).
PRESETS: dict[str, dict[str, Any]] = {
    # elmo_2x1024_128_2048cnn_1xhighway: 13.6M parameters, 256-dim output.
    "small": _released(dim=1024, projection_dim=128, n_highway=1),
    # elmo_2x2048_256_2048cnn_1xhighway: 28.0M parameters, 512-dim output.
    "medium": _released(dim=2048, projection_dim=256, n_highway=1),
    # elmo_2x4096_512_2048cnn_2xhighway: 93.6M parameters, 1024-dim output.
    "original": _released(dim=4096, projection_dim=512, n_highway=2),
    # elmo_2x4096_512_2048cnn_2xhighway_5.5B: same shapes, trained on 5.5B tokens.
    "original_5.5B": _released(dim=4096, projection_dim=512, n_highway=2),
}


@dataclasses.dataclass(frozen=True)
class BiLMConfig:
    """Shapes and constants of a character-CNN biLM (hashable: usable as a `jit` static argument).

    Attributes:
      char_embed_dim: width of a character embedding (`char_cnn.embedding.dim`).
      filters: `((width, num_filters), ...)` of the character convolutions.
      n_highway: number of highway layers after the convolutions (0 for none).
      n_characters: rows of the character embedding *including* the padding row 0 (262 for the
        released models: 256 bytes, 5 specials, +1 for padding).
      max_characters_per_token: characters per token including begin/end of word (50).
      activation: "relu" or "tanh", applied to each convolution after max-pooling.
      dim: LSTM memory cell size (`lstm.dim`).
      projection_dim: LSTM output size and token-embedding size (`lstm.projection_dim`).
      n_layers: LSTM layers per direction.
      cell_clip: clip the memory cell to +-cell_clip (None or 0: no clip).
      proj_clip: clip the projected output to +-proj_clip (None or 0: no clip).
      use_skip_connections: add each LSTM layer's input to its output, from the second layer on.
      forget_bias: added to the forget gate at run time (TensorFlow's `LSTMCell` default, 1.0); the
        stored bias `B` does not include it.
      compute_dtype: "float32" or "bfloat16" (mixed precision, `ulmfit_jax.core.nn.precision`): the
        character convolutions, highway, projection and LSTM matmuls take bfloat16 operands and
        accumulate in float32; parameters, cell state and outputs stay float32. A run-time
        choice, not part of the model: `options.json` does not record it.
    """

    char_embed_dim: int = 16
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256))
    n_highway: int = 2
    n_characters: int = 262
    max_characters_per_token: int = 50
    activation: str = "relu"
    dim: int = 4096
    projection_dim: int = 512
    n_layers: int = 2
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True
    forget_bias: float = 1.0
    compute_dtype: str = precision.FLOAT32

    def __post_init__(self):
        object.__setattr__(self, "compute_dtype", precision.canonical_dtype(self.compute_dtype))
        if self.activation not in ("relu", "tanh"):
            raise ValueError(
                f"char_cnn.activation must be 'relu' or 'tanh', got {self.activation!r}"
            )
        if self.projection_dim > self.dim:
            raise ValueError(
                f"lstm.projection_dim ({self.projection_dim}) larger than lstm.dim ({self.dim}) "
                "is not a bilm-tf model"
            )
        if self.n_filters < self.projection_dim:
            raise ValueError(
                f"the character CNN has {self.n_filters} filters, fewer than "
                f"lstm.projection_dim ({self.projection_dim}); bilm-tf only projects down"
            )
        if self.max_characters_per_token < max(w for w, _ in self.filters):
            raise ValueError("a convolution is wider than max_characters_per_token")

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def n_filters(self) -> int:
        """Width of the concatenated convolution outputs (= highway width)."""
        return sum(n for _, n in self.filters)

    @property
    def has_cnn_projection(self) -> bool:
        """bilm-tf projects the CNN output only when its width differs from projection_dim."""
        return self.n_filters != self.projection_dim

    @property
    def has_lstm_projection(self) -> bool:
        """bilm-tf uses `LSTMCell(num_proj=projection_dim)` only when projection_dim < dim."""
        return self.projection_dim < self.dim

    @property
    def output_dim(self) -> int:
        """Width of every output layer: forward and backward halves, `2 * projection_dim`."""
        return 2 * self.projection_dim

    @property
    def num_output_layers(self) -> int:
        """Token layer plus one per LSTM layer (AllenNLP's `_ElmoBiLm.num_layers`)."""
        return self.n_layers + 1

    # ---- options.json ----------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: dict[str, Any]) -> BiLMConfig:
        """Build from a bilm-tf options dict (extra training keys are ignored).

        bilm-tf *training* options say `n_characters: 261` (the ids before the +1 padding shift);
        inference needs 262 rows, which is what bilm-tf tells users to set, so 261 is read as 262.
        """
        try:
            lstm = options["lstm"]
            cnn = options["char_cnn"]
            n_characters = int(cnn["n_characters"])
            return cls(
                char_embed_dim=int(cnn["embedding"]["dim"]),
                filters=tuple((int(w), int(n)) for w, n in cnn["filters"]),
                n_highway=int(cnn.get("n_highway") or 0),
                n_characters=262 if n_characters == 261 else n_characters,
                max_characters_per_token=int(cnn["max_characters_per_token"]),
                activation=str(cnn["activation"]),
                dim=int(lstm["dim"]),
                projection_dim=int(lstm["projection_dim"]),
                n_layers=int(lstm.get("n_layers", 1)),
                cell_clip=_optional_float(lstm.get("cell_clip")),
                proj_clip=_optional_float(lstm.get("proj_clip")),
                use_skip_connections=bool(lstm.get("use_skip_connections", False)),
            )
        except KeyError as e:
            raise ValueError(f"options are missing the key {e.args[0]!r}") from None

    def to_options(self) -> dict[str, Any]:
        """The options.json dict bilm-tf and AllenNLP read."""
        return {
            "lstm": {
                "use_skip_connections": self.use_skip_connections,
                "projection_dim": self.projection_dim,
                "cell_clip": self.cell_clip,
                "proj_clip": self.proj_clip,
                "dim": self.dim,
                "n_layers": self.n_layers,
            },
            "char_cnn": {
                "activation": self.activation,
                "embedding": {"dim": self.char_embed_dim},
                "filters": [list(f) for f in self.filters],
                "max_characters_per_token": self.max_characters_per_token,
                "n_characters": self.n_characters,
                "n_highway": self.n_highway,
            },
        }


def _optional_float(x) -> float | None:
    return None if x is None else float(x)


def read_options(path: str | os.PathLike) -> BiLMConfig:
    """Read a bilm-tf `options.json` file into a `BiLMConfig`."""
    with open(path, encoding="utf-8") as f:
        try:
            options = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a JSON options file ({e})") from None
    return BiLMConfig.from_options(options)


def preset(name: str) -> BiLMConfig:
    """The config of a released model: "small", "medium", "original" or "original_5.5B"."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return BiLMConfig.from_options(PRESETS[name])
