"""Embed a file of sentences into hdf5, like `allennlp elmo` and bilm-tf's `dump_bilm_embeddings`.

Input: one whitespace-tokenized sentence per line (UTF-8). Output: AllenNLP's `allennlp elmo`
file (`ElmoEmbedder.embed_file`): one float32 dataset per line, without `<S>`/`</S>`,

    all      [num_layers, n_tokens, 2 * projection_dim]   (3 layers for the released models)
    top      [n_tokens, 2 * projection_dim]               (the last LSTM layer)
    average  [n_tokens, 2 * projection_dim]               (mean of the layers)

named by its 0-based line index, plus the dataset `sentence_to_index`: one variable-length
string, the JSON object mapping each sentence (the line, stripped: its tokens as written) to
its index as a string (a repeated sentence maps to its last line, as a Python dict keeps it).
Read it as AllenNLP documents:

    with h5py.File("out.hdf5") as f:
        index = json.loads(f["sentence_to_index"][0])
        vectors = f[index["The cat sat ."]][...]

`forget_sentences=True` leaves `sentence_to_index` out; `use_sentence_keys=True` names each
dataset by the sentence itself (no `sentence_to_index`), refusing repeated sentences, blank
lines and sentences containing "/" (which hdf5 reads as a group path) with a ValueError naming
the line before any work is done.

Two modes:

* stateless (default): every sentence starts from the zero state, so its result does not depend
  on its neighbours. Sentences are sorted by length and batched, each batch padded to a bucket
  length and to the full batch size, so at most `len(LENGTH_BUCKETS)` shapes are compiled, plus
  one for a short last batch (more only for sentences over 256 tokens, in steps of 128).
  Padding and batching change no result beyond float rounding (~1e-6).
* stateful (`stateful=True`): lines in file order, in batches of exactly `batch_size`; row r of
  a batch continues row r of the previous batch (bilm-tf's `dump_bilm_embeddings` is this mode
  with batch size 1). The last, smaller batch updates only its rows (AllenNLP semantics). This
  is what `allennlp elmo` always does (its `_ElmoBiLm` keeps its state between batches; it has
  no stateless mode): pass `--stateful` to reproduce an AllenNLP file number for number.

Bad input, documented policies:

* empty or blank line: a dataset of shape [num_layers, 0, D] ([0, D] for top/average). AllenNLP's
  command refuses such files; we keep line numbers aligned instead (its `sentence_to_index`
  entry is the empty string). In stateful mode the empty
  sentence is still its batch row and advances that row's state through `<S> </S>`, as an empty
  sentence inside an AllenNLP batch does.
* tokens longer than 48 UTF-8 bytes: truncated to 48 bytes, as the references do.
* bytes that are not UTF-8: by default a `ValueError` naming the line (1-based) and byte; with
  `invalid_utf8="replace"` they become U+FFFD (whose 3 UTF-8 bytes the model then sees).

The whole input is read into memory first (the stateless mode sorts it by length). The output is
written to `OUTPUT.PID.partial` in the same folder and renamed into place when complete, so an
interrupted run (Ctrl-C, a crash) never leaves a file that looks finished. The output may not
be the input, and an existing file this command did not write is refused unless `overwrite`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from elmo_jax.embedding.token_cache import TokenEmbeddingCache
from elmo_jax.model.bilm import bilm_apply, bilm_apply_embedded, remove_sentence_boundaries
from elmo_jax.model.characters import batch_to_ids
from elmo_jax.model.config import BiLMConfig
from elmo_jax.model.lstmp import zero_state
from ulmfit_jax.core import outputs

Params = dict

LAYER_MODES = ("all", "top", "average")
LENGTH_BUCKETS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def bucket_length(n: int) -> int:
    """The padded length for a batch whose longest sentence has n tokens."""
    for b in LENGTH_BUCKETS:
        if n <= b:
            return b
    return -(-n // 128) * 128


def read_lines(path: str | os.PathLike, invalid_utf8: str = "error") -> list[str]:
    """The lines of a UTF-8 file, each stripped of surrounding whitespace (AllenNLP's sentences).

    Lines end at `\\n`, `\\r\\n` or `\\r` (Python's universal newlines, as `open()` and the
    references read them).

    Args:
      path: the input file.
      invalid_utf8: "error" (raise ValueError naming the line) or "replace" (U+FFFD).
    """
    if invalid_utf8 not in ("error", "replace"):
        raise ValueError(f"invalid_utf8 must be 'error' or 'replace', got {invalid_utf8!r}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8", "strict" if invalid_utf8 == "error" else "replace")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{data[e.start]:02x} at column "
            f"{e.start - line_start + 1}); re-encode the file as UTF-8 or use "
            "--invalid-utf8 replace"
        ) from None
    return [line.strip() for line in io.StringIO(text, newline=None)]


@dataclasses.dataclass
class EmbedStats:
    """What `embed_file` did: counts, wall time (compilation included) and compiled shapes."""

    sentences: int
    tokens: int
    seconds: float
    shapes: set[tuple[int, int]]

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def _select(layers, mask, layer_mode: str):
    """Boundaries removed and the requested layers: [B, L, T, D] or [B, T, D]."""
    stacked = jnp.stack([remove_sentence_boundaries(x, mask)[0] for x in layers])
    if layer_mode == "top":
        return stacked[-1]
    if layer_mode == "average":
        return jnp.mean(stacked, axis=0)
    return jnp.transpose(stacked, (1, 0, 2, 3))


@functools.lru_cache(maxsize=16)
def _compiled(config: BiLMConfig, layer_mode: str):
    """Jitted functions per (config, mode), shared by every Embedder so compilations are reused
    (the parameters are arguments, never baked in)."""

    def from_chars(params, char_ids, state):
        layers, mask, state = bilm_apply(params, config, char_ids, state)
        return _select(layers, mask, layer_mode), state

    def from_embeddings(params, emb, mask, state):
        layers, mask, state = bilm_apply_embedded(params, config, emb, mask, state)
        return _select(layers, mask, layer_mode), state

    return jax.jit(from_chars), jax.jit(from_embeddings)


class Embedder:
    """Jitted sentence-to-layers function shared by the file command and tests.

    Args:
      params, config: the biLM.
      layer_mode: "all", "top" or "average".
      token_cache: look token embeddings up in this cache instead of running the char CNN.
    """

    def __init__(
        self,
        params: Params,
        config: BiLMConfig,
        layer_mode: str = "all",
        token_cache: TokenEmbeddingCache | None = None,
    ) -> None:
        if layer_mode not in LAYER_MODES:
            raise ValueError(f"layers must be one of {LAYER_MODES}, got {layer_mode!r}")
        self.params, self.config, self.cache = params, config, token_cache
        self.layer_mode = layer_mode
        self._from_chars, self._from_embeddings = _compiled(config, layer_mode)

    def __call__(self, sentences: Sequence[Sequence[str]], pad_to: int, state=None):
        """Layers for a batch: (float32 numpy [B, L, pad_to, D] or [B, pad_to, D], state)."""
        if self.cache is not None:
            emb, mask = self.cache.embed(sentences, pad_to=pad_to)
            out, state = self._from_embeddings(self.params, emb, mask, state)
        else:
            ids = batch_to_ids(sentences, self.config.max_characters_per_token, pad_to=pad_to)
            out, state = self._from_chars(self.params, ids, state)
        return np.asarray(out), state


def _batches(sentences: list[list[str]], batch_size: int, stateful: bool):
    """Yields (line indices, padded batch size). Stateless: sorted by length, empty lines
    skipped (written directly), every batch padded to batch_size rows, except that a short last
    batch is padded only to the next power of two (a 3-line file does not run 64 rows)."""
    if stateful:
        for start in range(0, len(sentences), batch_size):
            rows = list(range(start, min(start + batch_size, len(sentences))))
            yield rows, len(rows)
        return
    order = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, min(batch_size, 1 << (len(rows) - 1).bit_length())


# Kept under its old name: the one atomic writer is the core's.
atomic_output = outputs.atomic_file

# The attribute that marks an hdf5 file as this command's output (`_is_our_output`).
WRITTEN_BY = "elmo_jax embed"


def _is_our_output(path: Path) -> bool:
    """An hdf5 file this command wrote (it may be replaced without --overwrite): marked with
    `written_by`, or, from before the mark, holding the `layers` and `stateful` attributes."""
    try:
        with h5py.File(path, "r") as f:
            attrs = set(f.attrs)
            return f.attrs.get("written_by") == WRITTEN_BY or {"layers", "stateful"} <= attrs
    except OSError:  # not hdf5
        return False


def empty_embedding(config: BiLMConfig, layers: str = "all") -> np.ndarray:
    """The embedding of an empty sentence: float32[num_layers, 0, D], or [0, D] for top/average."""
    dim = config.output_dim
    if layers == "all":
        return np.zeros((config.num_output_layers, 0, dim), np.float32)
    return np.zeros((0, dim), np.float32)


def embed_batches(
    embedder: Embedder,
    sentences: Sequence[Sequence[str]],
    *,
    batch_size: int,
    stateful: bool,
    shapes: set[tuple[int, int]] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """`(index, embedding)` for every sentence, in the order they are computed (module
    docstring: stateless runs sort by length and yield empty sentences first).

    Args:
      embedder: the jitted biLM (`Embedder`).
      sentences: tokenized sentences.
      batch_size: sentences per batch.
      stateful: continue each batch row's state from the previous batch (input order).
      shapes: when given, the `(rows, length)` of every batch run is added to it.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    sentences = [list(s) for s in sentences]
    layers = embedder.layer_mode
    empty = empty_embedding(embedder.config, layers)
    # Stateful runs start from zeros, as the references do; passing the zero state explicitly
    # keeps one traced signature for every batch.
    state = zero_state(embedder.config, batch_size) if stateful else None
    if not stateful:
        for i, s in enumerate(sentences):
            if not s:
                yield i, empty
    for rows, padded_rows in _batches(sentences, batch_size, stateful):
        batch = [sentences[i] for i in rows]
        batch += [[]] * (padded_rows - len(batch))
        pad_to = bucket_length(max(len(s) for s in batch))
        if shapes is not None:
            shapes.add((padded_rows, pad_to))
        out, new_state = embedder(batch, pad_to, state if stateful else None)
        if stateful:
            state = new_state
        for r, i in enumerate(rows):
            n = len(sentences[i])
            yield i, (out[r, :, :n] if layers == "all" else out[r, :n])


def _check_sentence_keys(lines: Sequence[str], path: str | os.PathLike) -> None:
    """AllenNLP's `use_sentence_keys` refusals, made before any work and naming the line."""
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line:
            raise ValueError(f"{path}: line {number} is blank; --use-sentence-keys needs text")
        if "/" in line:
            raise ValueError(
                f"{path}: line {number} contains '/', which hdf5 reads as a group path; "
                "drop --use-sentence-keys (keys are then line numbers)"
            )
        if line in seen:
            raise ValueError(
                f"{path}: line {number} repeats line {seen[line]}; to encode duplicate "
                "sentences, do not pass --use-sentence-keys"
            )
        seen[line] = number


def embed_file(
    params: Params,
    config: BiLMConfig,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    layers: str = "all",
    batch_size: int = 64,
    stateful: bool = False,
    use_sentence_keys: bool = False,
    forget_sentences: bool = False,
    token_cache: TokenEmbeddingCache | None = None,
    invalid_utf8: str = "error",
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> EmbedStats:
    """Embed every line of `input_path` into `output_path` (module docstring).

    Args:
      params, config: the biLM (`load_allennlp`).
      input_path: UTF-8 text, one whitespace-tokenized sentence per line.
      output_path: the hdf5 file to write (replaced when complete; see the module docstring).
      layers: "all", "top" or "average".
      batch_size: sentences per batch.
      stateful: continue each batch row's state from the previous batch (file order).
      use_sentence_keys: name each dataset by its sentence instead of its line index.
      forget_sentences: leave out the `sentence_to_index` dataset.
      token_cache: use (and grow) this token-embedding cache instead of the char CNN.
      invalid_utf8: "error" or "replace".
      progress: show a progress bar; None means only when stdout is a terminal.
      log: where to report the throughput line (None: nowhere).
      overwrite: replace an existing output that this command did not write (never the input).

    Returns:
      The `EmbedStats` of the run.

    Raises:
      outputs.OutputRefused: the output is the input, or a file this command did not write.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    outputs.check_output_file(
        output_path, inputs=[input_path], overwrite=overwrite, is_ours=_is_our_output
    )
    embedder = Embedder(params, config, layers, token_cache)
    lines = read_lines(input_path, invalid_utf8)
    if use_sentence_keys:
        _check_sentence_keys(lines, input_path)
    sentences = [line.split() for line in lines]
    if progress is None:
        progress = sys.stdout.isatty()
    stats = EmbedStats(len(sentences), sum(map(len, sentences)), 0.0, set())
    start = time.perf_counter()
    with (
        atomic_output(output_path) as partial,
        h5py.File(partial, "w") as fout,
        tqdm(total=len(sentences), unit="sent", disable=not progress) as bar,
    ):
        fout.attrs["written_by"] = WRITTEN_BY
        fout.attrs["layers"] = layers
        fout.attrs["stateful"] = stateful
        batches = embed_batches(
            embedder, sentences, batch_size=batch_size, stateful=stateful, shapes=stats.shapes
        )
        for i, data in batches:
            fout.create_dataset(lines[i] if use_sentence_keys else str(i), data=data)
            bar.update(1)
        if not use_sentence_keys and not forget_sentences:
            # AllenNLP's layout: a (1,) variable-length string dataset holding the JSON.
            index = fout.create_dataset(
                "sentence_to_index", (1,), dtype=h5py.string_dtype(encoding="utf-8")
            )
            index[0] = json.dumps({line: str(i) for i, line in enumerate(lines)})
    stats.seconds = time.perf_counter() - start
    if log is not None:
        log(
            f"embedded {stats.sentences} sentences ({stats.tokens} tokens) in "
            f"{stats.seconds:.2f} s: {stats.tokens_per_second:,.0f} tokens/s "
            f"({len(stats.shapes)} compiled shapes)"
        )
    return stats
