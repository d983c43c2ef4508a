"""The published fastai AWD-LSTM language models, loadable in one call.

    >>> params, config, vocab = load_pretrained("wt103_fwd")  # doctest: +SKIP
    >>> config.emb_sz, config.n_hid, config.n_layers  # doctest: +SKIP
    (400, 1152, 3)

The archives are downloaded once into the cache of `ulmfit_jax.core.fetch` (`$ULMFIT_CACHE`) and
unpacked there. Behind a proxy, put the `.tgz` files on a reachable server or folder and set
`$ULMFIT_MIRROR` to it; offline, copy each file to the cache path the error message names.

Where the entries come from (read 2026-12 from public copies, not checked against the live
servers, which this project's machines cannot reach):

* addresses: `URLs.WT103_FWD` / `URLs.WT103_BWD` in fastai's `fastai/data/external.py`
  (`S3_MODEL = 'https://s3.amazonaws.com/fast-ai-modelzoo/'`), the models
  `language_model_learner` downloads for `AWD_LSTM` (`_model_meta` in `fastai/text/learner.py`);
* member names: fastai's own docs of `untar_data` (`nbs/04_data.external.ipynb`) list
  `wt103-bwd/itos_wt103.pkl` and `wt103-bwd/lstm_bwd.pth`; the forward archive holds
  `lstm_fwd.pth` and `itos_wt103.pkl` (third-party copies of its contents). fastai itself
  picks the archive's only `*.pth` and `*.pkl`, so the archive's top folder is not relied on:
  a member is found by its base name (`ulmfit_jax.core.fetch.fetch_archive`);
* sizes and checksums: fastai publishes none for these two archives (`fastai/data/checks.txt`
  and `download_checks.py` list only the older `wt103.tgz` and `wt103-1.tgz`, and their md5 is
  of the first MiB only), so they are `None` and downloads are not verified.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ulmfit_jax.core.fetch import fetch_archive
from ulmfit_jax.models.awd_lstm import AWDLSTMConfig
from ulmfit_jax.weights.fastai import load_fastai_lm

_FASTAI_MODELZOO = "https://s3.amazonaws.com/fast-ai-modelzoo/"


@dataclasses.dataclass(frozen=True)
class PretrainedLM:
    """A published fastai language model: an archive holding its `.pth` and `itos.pkl`.

    Attributes:
      name: the registry key.
      description: what it is and how it was trained.
      archive: address of the `.tgz` (anything `ulmfit_jax.core.fetch.fetch` reads).
      weights_member: the `.pth` state dict inside the archive.
      vocab_member: the pickled list of tokens inside the archive.
      sha256: the archive's sha256 as its publisher states it; None when none is published.
      size_bytes: the archive's size as its publisher states it; None when none is published.
      backwards: trained on reversed text: feed it token ids in reverse order.
    """

    name: str
    description: str
    archive: str
    weights_member: str
    vocab_member: str
    sha256: str | None = None
    size_bytes: int | None = None
    backwards: bool = False


MODELS: dict[str, PretrainedLM] = {
    model.name: model
    for model in [
        PretrainedLM(
            name="wt103_fwd",
            description=(
                "fastai's AWD-LSTM language model pretrained on WikiText-103 (forward), the "
                "starting point of ULMFiT, with its WikiText-103 vocabulary (sizes of fastai's "
                "awd_lstm_lm_config: 3 layers, emb_sz 400, n_hid 1152)"
            ),
            archive=_FASTAI_MODELZOO + "wt103-fwd.tgz",
            weights_member="wt103-fwd/lstm_fwd.pth",
            vocab_member="wt103-fwd/itos_wt103.pkl",
        ),
        PretrainedLM(
            name="wt103_bwd",
            description=(
                "fastai's AWD-LSTM language model pretrained on WikiText-103 read backwards "
                "(for ULMFiT's backward classifier); same sizes as wt103_fwd"
            ),
            archive=_FASTAI_MODELZOO + "wt103-bwd.tgz",
            weights_member="wt103-bwd/lstm_bwd.pth",
            vocab_member="wt103-bwd/itos_wt103.pkl",
            backwards=True,
        ),
    ]
}


def get(name: str) -> PretrainedLM:
    """The registry entry `name`; a `ValueError` listing the known names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown pretrained language model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]


def check_direction(name: str, backward: bool) -> PretrainedLM:
    """The entry `name` for a stage reading text backwards (`backward`) or not; a `ValueError`
    naming the entries that fit when `name` reads the other way. Downloads nothing."""
    model = get(name)
    if model.backwards != bool(backward):
        fits = sorted(n for n, m in MODELS.items() if m.backwards == bool(backward))
        direction = "backward" if model.backwards else "forward"
        raise ValueError(
            f"{name!r} is a {direction} language model but this stage has backward={backward}: "
            f"use {' or '.join(repr(n) for n in fits) or 'a model of that direction'}"
        )
    return model


def fetch_files(
    name: str, *, cache_dir: str | os.PathLike | None = None, progress: bool | None = None
) -> tuple[Path, Path]:
    """The local `.pth` and `itos.pkl` of the registered model `name`, downloaded and unpacked
    once (arguments as for `load_pretrained`)."""
    model = get(name)
    weights, vocab = fetch_archive(
        model.archive,
        [model.weights_member, model.vocab_member],
        known_hash=f"sha256:{model.sha256}" if model.sha256 else None,
        cache_dir=cache_dir,
        progress=progress,
    )
    return weights, vocab


def load_pretrained(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    **config_overrides,
) -> tuple[dict[str, Any], AWDLSTMConfig, list[str]]:
    """Download (once), unpack and load a published language model.

    Args:
      name: a key of `MODELS` ("wt103_fwd", "wt103_bwd").
      cache_dir: the cache root (default `ulmfit_jax.core.fetch.cache_root()`).
      progress: show a download progress bar (default: when stderr is a terminal).
      **config_overrides: `AWDLSTMConfig` fields not stored in the weights (dropouts, pad id).

    Returns:
      What `ulmfit_jax.load_fastai_lm` returns: `(params, config, vocab)`.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
      ulmfit_jax.core.fetch.DownloadError: the archive could not be downloaded.
    """
    weights, vocab = fetch_files(name, cache_dir=cache_dir, progress=progress)
    return load_fastai_lm(weights, vocab, **config_overrides)
