"""The ELMo biLMs AllenNLP released, loadable in one call.

    >>> params, config = load_pretrained("small")  # doctest: +SKIP
    >>> config.dim, config.projection_dim  # doctest: +SKIP
    (1024, 128)

Each model is an `options.json` and an `.hdf5` of weights, downloaded once into the cache of
`ulmfit_jax.core.fetch` (`$ULMFIT_CACHE`). Behind a proxy, put the files (same names) on a reachable
server or folder and set `$ULMFIT_MIRROR` to it; offline, copy each file to the cache path the
error message names.

Where the entries come from (read 2026-12 from public copies, not checked against the live
servers, which this project's machines cannot reach):

* addresses: AllenNLP's ELMo how-to (`tutorials/how_to/elmo.md` in allenai/allennlp) gives the
  "original" model's two files under `https://allennlp.s3.amazonaws.com/models/elmo/`; the
  table at allennlp.org/elmo links "weights" and "options" for each model, but the stored copy
  read here lacks the link targets: the other three follow the same
  `<model>/elmo_<model>_{options.json,weights.hdf5}` scheme with the folder names that code
  using them widely copies (mostly with the equivalent path-style host
  `https://s3-us-west-2.amazonaws.com/allennlp/models/elmo/`);
* parameter counts and sizes: the table at allennlp.org/elmo (13.6M, 28.0M, 93.6M, 93.6M
  parameters; LSTM hidden/output 1024/128, 2048/256, 4096/512, 4096/512);
* file sizes and checksums: AllenNLP publishes none, so they are `None` and downloads are not
  verified.
"""

from __future__ import annotations

import dataclasses
import os

from elmo_jax.model.config import BiLMConfig
from elmo_jax.weights.allennlp import Params, load_allennlp
from ulmfit_jax.core.fetch import fetch

_ALLENNLP_ELMO = "https://allennlp.s3.amazonaws.com/models/elmo/"


@dataclasses.dataclass(frozen=True)
class PretrainedBiLM:
    """A released biLM: its options and weights files.

    Attributes:
      name: the registry key (also the `elmo_jax.model.config.PRESETS` key of its shapes).
      description: what it is and how it was trained.
      options: address of the options.json (anything `ulmfit_jax.core.fetch.fetch` reads).
      weights: address of the hdf5 weights.
      options_sha256, weights_sha256: as the publisher states them; None when not published.
      weights_size_bytes: as the publisher states it; None when not published.
    """

    name: str
    description: str
    options: str
    weights: str
    options_sha256: str | None = None
    weights_sha256: str | None = None
    weights_size_bytes: int | None = None


def _released(name: str, folder: str, description: str) -> PretrainedBiLM:
    base = f"{_ALLENNLP_ELMO}{folder}/elmo_{folder}"
    return PretrainedBiLM(
        name=name,
        description=description,
        options=f"{base}_options.json",
        weights=f"{base}_weights.hdf5",
    )


MODELS: dict[str, PretrainedBiLM] = {
    model.name: model
    for model in [
        _released(
            "small",
            "2x1024_128_2048cnn_1xhighway",
            "13.6M parameters, LSTM 1024 projected to 128, 1 highway layer; 1B Word Benchmark",
        ),
        _released(
            "medium",
            "2x2048_256_2048cnn_1xhighway",
            "28.0M parameters, LSTM 2048 projected to 256, 1 highway layer; 1B Word Benchmark",
        ),
        _released(
            "original",
            "2x4096_512_2048cnn_2xhighway",
            "93.6M parameters, LSTM 4096 projected to 512, 2 highway layers; 1B Word Benchmark "
            "(the model of the ELMo paper)",
        ),
        _released(
            "original_5.5B",
            "2x4096_512_2048cnn_2xhighway_5.5B",
            "93.6M parameters, the original's shapes, trained on 5.5B tokens (Wikipedia and WMT "
            "2008-2012 news crawl)",
        ),
    ]
}


def get(name: str) -> PretrainedBiLM:
    """The registry entry `name`; a `ValueError` listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained ELMo model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def load_pretrained(
    name: str, *, cache_dir: str | os.PathLike | None = None, progress: bool | None = None
) -> tuple[Params, BiLMConfig]:
    """Download (once) and load a released biLM.

    Args:
      name: a key of `MODELS` ("small", "medium", "original", "original_5.5B").
      cache_dir: the cache root (default `ulmfit_jax.core.fetch.cache_root()`).
      progress: show a download progress bar (default: when stderr is a terminal).

    Returns:
      What `elmo_jax.weights.allennlp.load_allennlp` returns: `(params, config)`.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
      ulmfit_jax.core.fetch.DownloadError: a file could not be downloaded.
    """
    model = get(name)

    def download(address: str, sha256: str | None):
        known_hash = f"sha256:{sha256}" if sha256 else None
        return fetch(address, known_hash=known_hash, cache_dir=cache_dir, progress=progress)

    options = download(model.options, model.options_sha256)
    weights = download(model.weights, model.weights_sha256)
    return load_allennlp(options, weights)
