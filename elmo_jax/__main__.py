"""Command line: `python -m elmo_jax` (or `elmo-jax`).

    elmo-jax embed (--model NAME | --options OPTIONS --weights WEIGHTS) INPUT OUTPUT.hdf5 \\
        [--all | --top | --average | --layers all|top|average] [--batch-size N] [--stateful]
        [--use-sentence-keys] [--forget-sentences] [--token-cache] [--vocab FILE]
    elmo-jax tokens (--model NAME | --options OPTIONS --weights WEIGHTS) VOCAB OUTPUT.hdf5

`--model` is a released model of `elmo_jax.weights.pretrained` ("small", "medium", "original",
"original_5.5B"), downloaded once into the cache; `--options`/`--weights` are files or addresses.

`embed` writes AllenNLP's `allennlp elmo` file: one dataset per input line and the JSON
`sentence_to_index` (see `elmo_jax.embedding.files`); `--all`/`--top`/`--average`, `--batch-size`
(default 64), `--use-sentence-keys` and `--forget-sentences` mean what they mean there.
`--stateful` is what `allennlp elmo` always does (state carried from batch to batch, file order);
without it every sentence starts from the zero state. `tokens` writes the
context-independent embedding of each vocabulary line as one dataset "embedding"
[n_words, projection_dim], bilm-tf's `dump_token_embeddings` format. Bad input (missing or
mismatched weights, non-UTF-8 text) ends with a one-line error and exit status 2; Ctrl-C with one
line and exit status 130, leaving no output file (it is renamed into place only when complete).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from elmo_jax.embedding.files import LAYER_MODES


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a released model: small, medium, original, original_5.5B")
    parser.add_argument("--options", help="the model's options.json (instead of --model)")
    parser.add_argument("--weights", help="the model's hdf5 weights (instead of --model)")


def _check_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    files = args.options or args.weights
    if args.model and files:
        parser.error("give either --model NAME or --options and --weights, not both")
    if not args.model and not (args.options and args.weights):
        parser.error("give either --model NAME or both --options and --weights")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elmo-jax", description="ELMo biLM tools in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed a file of sentences (one per line) into hdf5")
    _model_arguments(embed)
    embed.add_argument("input", help="UTF-8 text, one whitespace-tokenized sentence per line")
    embed.add_argument("output", help="the hdf5 file to write")
    group = embed.add_mutually_exclusive_group()
    group.add_argument("--layers", choices=LAYER_MODES, default="all")
    for mode, text in (
        ("all", "all biLM layers, [layers, n_tokens, D] (the default)"),
        ("top", "the top LSTM layer, [n_tokens, D]"),
        ("average", "the mean of the layers, [n_tokens, D]"),
    ):
        group.add_argument(f"--{mode}", dest="layers", action="store_const", const=mode, help=text)
    embed.add_argument("--batch-size", type=int, default=64)
    embed.add_argument(
        "--stateful",
        action="store_true",
        help="AllenNLP's behaviour: file order, exact batches; row r continues row r of the "
        "previous batch (default: every sentence starts from the zero state)",
    )
    embed.add_argument(
        "--use-sentence-keys",
        action="store_true",
        help="name each dataset by its sentence instead of its line index",
    )
    embed.add_argument(
        "--forget-sentences",
        action="store_true",
        help="leave out the 'sentence_to_index' dataset (JSON: sentence -> line index)",
    )
    embed.add_argument(
        "--token-cache",
        action="store_true",
        help="run the character CNN once per distinct word and look the rest up",
    )
    embed.add_argument(
        "--vocab", help="words (one per line) to precompute in the token cache; implies it"
    )
    embed.add_argument("--invalid-utf8", choices=("error", "replace"), default="error")
    embed.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUTPUT this command did not write (never the input)",
    )

    tokens = sub.add_parser("tokens", help="dump context-independent token embeddings")
    _model_arguments(tokens)
    tokens.add_argument("vocab", help="one word per line")
    tokens.add_argument("output", help="the hdf5 file to write (dataset 'embedding')")
    return parser


def _read_vocab(path: str) -> list[str]:
    # bilm-tf and AllenNLP's tests read vocabularies as `read().strip().split("\n")`.
    with open(path, encoding="utf-8") as f:
        return [w for w in f.read().strip().split("\n") if w]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_model(parser, args)
    try:
        # Imported late so that `--help` is instant.
        from elmo_jax.embedding.files import embed_file
        from elmo_jax.embedding.token_cache import TokenEmbeddingCache
        from elmo_jax.weights.allennlp import load_allennlp
        from elmo_jax.weights.pretrained import load_pretrained

        if args.model:
            params, config = load_pretrained(args.model)
        else:
            params, config = load_allennlp(args.options, args.weights)
        if args.command == "tokens":
            words = _read_vocab(args.vocab)
            TokenEmbeddingCache(params, config).save(args.output, words)
            print(f"wrote {len(words)} token embeddings to {args.output}")
            return 0
        cache = None
        if args.token_cache or args.vocab:
            vocab = _read_vocab(args.vocab) if args.vocab else ()
            cache = TokenEmbeddingCache(params, config, vocab)
        embed_file(
            params,
            config,
            args.input,
            args.output,
            layers=args.layers,
            batch_size=args.batch_size,
            stateful=args.stateful,
            use_sentence_keys=args.use_sentence_keys,
            forget_sentences=args.forget_sentences,
            token_cache=cache,
            invalid_utf8=args.invalid_utf8,
            log=print,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError, KeyError) as e:
        print(f"elmo-jax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"elmo-jax: interrupted; {args.output} was not written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
