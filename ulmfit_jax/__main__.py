"""Command line: `python -m ulmfit_jax`.

    python -m ulmfit_jax convert --pretrained NAME --out DIR
    python -m ulmfit_jax convert --pth PTH --itos ITOS [--backward] --out DIR
    python -m ulmfit_jax convert --classifier CONFIG.json --pth PTH --itos ITOS \\
        [--labels NAME,NAME,...] [--max-tokens N] [--backward] --out DIR

`convert` writes fastai weights as this project's export, `DIR/export`, which
`--config.init.workdir=DIR`, `ulmfit_jax.weights.export.load_lm` and
`ulmfit_jax.Predictor.from_workdir` read with no conversion step and no torch (see
`ulmfit_jax.weights.convert`). PTH, ITOS and CONFIG may be paths or addresses (`https://`,
`gs://`, `hf://`). The flags are absl flags, as in the `train.*` programs
(`ulmfit_jax.core.commands`). A mistake on the command line ends with one line and exit status 2
(SystemExit); bad input likewise returns 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from ulmfit_jax.core.commands import (
    Command,
    UsageError,
    define_switches,
    define_text_flags,
    run_commands,
)

PROGRAM = "python -m ulmfit_jax"


def _define_convert_flags(flag_values: flags.FlagValues) -> None:
    define_text_flags(
        flag_values,
        {
            "out": "the folder to write (DIR/export)",
            "pretrained": "a registered language model, e.g. wt103_fwd",
            "pth": "a fastai state dict (.pth): path or address",
            "itos": "its vocabulary (itos.pkl): path or address",
            "classifier": "the .pth is a text classifier; this is a JSON file of its "
            "ClassifierConfig",
        },
    )
    flags.DEFINE_list(
        "labels", None, "classifier: comma-separated class names, in order", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "max-tokens", 0, "classifier: keep the first N tokens (0: all)", flag_values=flag_values
    )
    define_switches(flag_values, {"backward": "trained on reversed text"})


def _check_convert(flag_values: flags.FlagValues) -> None:
    value = {name: flag_values[name].value for name in flag_values}
    if not value["out"]:
        raise UsageError("convert needs --out DIR")
    files = value["pth"] or value["itos"]
    if value["pretrained"] and (files or value["classifier"] or value["backward"]):
        raise UsageError(
            "--pretrained names a registered language model: give it alone (its direction is "
            "known), without --pth/--itos/--classifier/--backward"
        )
    if not value["pretrained"] and not (value["pth"] and value["itos"]):
        raise UsageError("convert needs either --pretrained NAME, or --pth and --itos")
    if (value["labels"] or value["max-tokens"]) and not value["classifier"]:
        raise UsageError("--labels and --max-tokens are for a --classifier")


def _convert(flag_values: flags.FlagValues, positionals: list[str]) -> int:
    """Write fastai weights as an export that load_lm and Predictor read."""
    # Imported late so that `--help` is instant.
    from ulmfit_jax.weights import convert

    value = {name: flag_values[name].value for name in flag_values}
    out = value["out"]
    try:
        if value["pretrained"]:
            meta = convert.convert_pretrained(out, value["pretrained"])
        elif value["classifier"]:
            meta = convert.convert_classifier(
                out,
                value["pth"],
                value["itos"],
                value["classifier"],
                backward=value["backward"],
                label_names=value["labels"] or None,
                max_tokens=value["max-tokens"],
            )
        else:
            meta = convert.convert_lm(out, value["pth"], value["itos"], backward=value["backward"])
    except (ValueError, OSError) as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    model = meta["model"]
    print(
        f"wrote {out}/export: {meta['stage']}, vocab {len(meta['vocab']):,}, "
        f"emb_sz {model['emb_sz']}, n_hid {model['n_hid']}, n_layers {model['n_layers']}"
        f"{', backward' if meta['backward'] else ''}"
    )
    return 0


COMMANDS = (Command("convert", (), _define_convert_flags, _convert, _check_convert),)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (default `sys.argv[1:]`); returns the exit status."""
    return run_commands(PROGRAM, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
