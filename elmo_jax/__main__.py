"""Command line: `python -m elmo_jax` (or `elmo-jax`).

    elmo-jax embed (--model NAME | --options OPTIONS --weights WEIGHTS) INPUT OUTPUT.hdf5 \\
        [--all | --top | --average | --layers all|top|average] [--batch-size N] [--stateful]
        [--use-sentence-keys] [--forget-sentences] [--token-cache] [--vocab FILE]
        [--invalid-utf8 error|replace]
    elmo-jax tokens (--model NAME | --options OPTIONS --weights WEIGHTS) VOCAB OUTPUT.hdf5

The command comes first, then its absl flags (`--flag value` or `--flag=value`, as in the
`train.*` programs) and its two file arguments in any order; `elmo-jax COMMAND --help` lists the
flags (`ulmfit_jax.core.commands`).

`--model` is a released model of `elmo_jax.weights.pretrained` ("small", "medium", "original",
"original_5.5B"), downloaded once into the cache; `--options`/`--weights` are files or addresses.

`embed` writes AllenNLP's `allennlp elmo` file: one dataset per input line and the JSON
`sentence_to_index` (see `elmo_jax.embedding.files`); `--all`/`--top`/`--average`, `--batch-size`
(default 64), `--use-sentence-keys` and `--forget-sentences` mean what they mean there.
`--stateful` is what `allennlp elmo` always does (state carried from batch to batch, file order);
without it every sentence starts from the zero state. `tokens` writes the
context-independent embedding of each vocabulary line as one dataset "embedding"
[n_words, projection_dim], bilm-tf's `dump_token_embeddings` format. A mistake on the command
line ends with one line and exit status 2 (SystemExit); bad input (missing or mismatched
weights, non-UTF-8 text) likewise returns 2; Ctrl-C ends with one line and exit status 130,
leaving no output file (it is renamed into place only when complete).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from elmo_jax.embedding.files import LAYER_MODES
from ulmfit_jax.core.commands import (
    Command,
    UsageError,
    define_switches,
    define_text_flags,
    run_commands,
)

PROGRAM = "elmo-jax"
_LAYER_FLAGS = {
    "all": "all biLM layers, [layers, n_tokens, D] (the default)",
    "top": "the top LSTM layer, [n_tokens, D]",
    "average": "the mean of the layers, [n_tokens, D]",
}


def _define_model_flags(flag_values: flags.FlagValues) -> None:
    define_text_flags(
        flag_values,
        {
            "model": "a released model: small, medium, original, original_5.5B",
            "options": "the model's options.json (instead of --model)",
            "weights": "the model's hdf5 weights (instead of --model)",
        },
    )


def _check_model(flag_values: flags.FlagValues) -> None:
    model, options, weights = (flag_values[n].value for n in ("model", "options", "weights"))
    if model and (options or weights):
        raise UsageError("give either --model NAME or --options and --weights, not both")
    if not model and not (options and weights):
        raise UsageError("give either --model NAME or both --options and --weights")


def _define_embed_flags(flag_values: flags.FlagValues) -> None:
    _define_model_flags(flag_values)
    flags.DEFINE_enum("layers", "all", LAYER_MODES, "which layers", flag_values=flag_values)
    define_switches(
        flag_values, {mode: f"--layers {mode}: {help}" for mode, help in _LAYER_FLAGS.items()}
    )
    flags.DEFINE_integer("batch-size", 64, "sentences per batch", flag_values=flag_values)
    define_switches(
        flag_values,
        {
            "stateful": "AllenNLP's behaviour: file order, exact batches; row r continues row r "
            "of the previous batch (default: every sentence starts from the zero state)",
            "use-sentence-keys": "name each dataset by its sentence instead of its line index",
            "forget-sentences": "leave out the 'sentence_to_index' dataset (JSON: sentence -> "
            "line index)",
            "token-cache": "run the character CNN once per distinct word and look the rest up",
            "overwrite": "replace an existing OUTPUT this command did not write (never the input)",
        },
    )
    define_text_flags(
        flag_values, {"vocab": "words (one per line) to precompute in the token cache; implies it"}
    )
    flags.DEFINE_enum(
        "invalid-utf8",
        "error",
        ["error", "replace"],
        "a line that is not valid UTF-8: an error, or U+FFFD for each bad byte",
        flag_values=flag_values,
    )


def _layers(flag_values: flags.FlagValues) -> str:
    """`--layers MODE` or one of `--all`/`--top`/`--average`."""
    given = [m for m in _LAYER_FLAGS if flag_values[m].present and flag_values[m].value]
    if len(given) + flag_values["layers"].present > 1:
        raise UsageError("give one of --layers, --all, --top, --average")
    return given[0] if given else flag_values["layers"].value


def _check_embed(flag_values: flags.FlagValues) -> None:
    _check_model(flag_values)
    _layers(flag_values)


def _read_vocab(path: str) -> list[str]:
    # bilm-tf and AllenNLP's tests read vocabularies as `read().strip().split("\n")`.
    with open(path, encoding="utf-8") as f:
        return [w for w in f.read().strip().split("\n") if w]


def _load_model(flag_values: flags.FlagValues):
    # Imported late so that `--help` is instant.
    from elmo_jax.weights.allennlp import load_allennlp
    from elmo_jax.weights.pretrained import load_pretrained

    if flag_values["model"].value:
        return load_pretrained(flag_values["model"].value)
    return load_allennlp(flag_values["options"].value, flag_values["weights"].value)


def _guarded(work, output: str) -> int:
    """Run `work()`; bad input and Ctrl-C end with one line (exit 2 and 130)."""
    try:
        work()
    except (ValueError, OSError, KeyError) as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted; {output} was not written", file=sys.stderr)
        return 130
    return 0


def _embed(flag_values: flags.FlagValues, positionals: list[str]) -> int:
    """Embed a file of sentences (one per line) into hdf5."""
    input_path, output = positionals

    def work():
        from elmo_jax.embedding.files import embed_file
        from elmo_jax.embedding.token_cache import TokenEmbeddingCache

        params, config = _load_model(flag_values)
        vocab_path = flag_values["vocab"].value
        cache = None
        if flag_values["token-cache"].value or vocab_path:
            vocab = _read_vocab(vocab_path) if vocab_path else ()
            cache = TokenEmbeddingCache(params, config, vocab)
        embed_file(
            params,
            config,
            input_path,
            output,
            layers=_layers(flag_values),
            batch_size=flag_values["batch-size"].value,
            stateful=flag_values["stateful"].value,
            use_sentence_keys=flag_values["use-sentence-keys"].value,
            forget_sentences=flag_values["forget-sentences"].value,
            token_cache=cache,
            invalid_utf8=flag_values["invalid-utf8"].value,
            log=print,
            overwrite=flag_values["overwrite"].value,
        )

    return _guarded(work, output)


def _tokens(flag_values: flags.FlagValues, positionals: list[str]) -> int:
    """Dump the context-independent token embeddings of a vocabulary (dataset 'embedding')."""
    vocab_path, output = positionals

    def work():
        from elmo_jax.embedding.token_cache import TokenEmbeddingCache

        params, config = _load_model(flag_values)
        words = _read_vocab(vocab_path)
        TokenEmbeddingCache(params, config).save(output, words)
        print(f"wrote {len(words)} token embeddings to {output}")

    return _guarded(work, output)


COMMANDS = (
    Command("embed", ("INPUT", "OUTPUT"), _define_embed_flags, _embed, _check_embed),
    Command("tokens", ("VOCAB", "OUTPUT"), _define_model_flags, _tokens, _check_model),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (default `sys.argv[1:]`); returns the exit status."""
    return run_commands(PROGRAM, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
