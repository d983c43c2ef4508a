"""Command line: `python -m ulmfit_jax`.

    python -m ulmfit_jax convert --pretrained NAME --out DIR
    python -m ulmfit_jax convert --pth PTH --itos ITOS [--backward] --out DIR
    python -m ulmfit_jax convert --classifier CONFIG.json --pth PTH --itos ITOS \\
        [--labels NAME,NAME,...] [--max-tokens N] [--backward] --out DIR

`convert` writes fastai weights as this project's export, `DIR/export`, which
`--config.init.workdir=DIR`, `ulmfit_jax.weights.export.load_lm` and
`ulmfit_jax.Predictor.from_workdir` read with no conversion step and no torch (see
`ulmfit_jax.weights.convert`). PTH, ITOS and CONFIG may be paths or addresses (`https://`,
`gs://`, `hf://`). Bad input ends with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ulmfit_jax", description="ULMFiT tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser(
        "convert", help="write fastai weights as an export that load_lm / Predictor read"
    )
    convert.add_argument("--out", required=True, help="the folder to write (DIR/export)")
    convert.add_argument("--pretrained", help="a registered language model, e.g. wt103_fwd")
    convert.add_argument("--pth", help="a fastai state dict (.pth): path or address")
    convert.add_argument("--itos", help="its vocabulary (itos.pkl): path or address")
    convert.add_argument(
        "--classifier",
        metavar="CONFIG",
        help="the .pth is a text classifier; CONFIG is a JSON object of its ClassifierConfig",
    )
    convert.add_argument("--labels", help="classifier: comma-separated class names, in order")
    convert.add_argument(
        "--max-tokens", type=int, default=0, help="classifier: keep the first N tokens (0: all)"
    )
    convert.add_argument("--backward", action="store_true", help="trained on reversed text")
    return parser


def _check_convert(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    files = args.pth or args.itos
    if args.pretrained and (files or args.classifier or args.backward):
        parser.error(
            "--pretrained names a registered language model: give it alone (its direction is "
            "known), without --pth/--itos/--classifier/--backward"
        )
    if not args.pretrained and not (args.pth and args.itos):
        parser.error("convert needs either --pretrained NAME, or --pth and --itos")
    if (args.labels or args.max_tokens) and not args.classifier:
        parser.error("--labels and --max-tokens are for a --classifier")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check_convert(parser, args)
    # Imported late so that `--help` is instant.
    from ulmfit_jax.weights import convert

    try:
        if args.pretrained:
            meta = convert.convert_pretrained(args.out, args.pretrained)
        elif args.classifier:
            labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
            meta = convert.convert_classifier(
                args.out,
                args.pth,
                args.itos,
                args.classifier,
                backward=args.backward,
                label_names=labels,
                max_tokens=args.max_tokens,
            )
        else:
            meta = convert.convert_lm(args.out, args.pth, args.itos, backward=args.backward)
    except (ValueError, OSError) as error:
        print(f"python -m ulmfit_jax: error: {error}", file=sys.stderr)
        return 2
    model = meta["model"]
    print(
        f"wrote {args.out}/export: {meta['stage']}, vocab {len(meta['vocab']):,}, "
        f"emb_sz {model['emb_sz']}, n_hid {model['n_hid']}, n_layers {model['n_layers']}"
        f"{', backward' if meta['backward'] else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
