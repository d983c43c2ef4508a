"""What the training programs share on the command line: two flags and one-line errors.

`run_program("train.ulmfit", main)` is `absl.app.run(main)`, except that a mistake in the input
(a misspelt `--config.key`, an unknown config variant, a bad flag value, a missing or damaged
file, a workdir that cannot be written or that another run holds) ends with one line on stderr

    train.ulmfit: error: MESSAGE

and exit status 2 instead of a traceback; `--verbose` (or `ULMFIT_TRACEBACK=1`) prints the
traceback too, and orbax's and jax's INFO logs, off otherwise. absl parses the flags, and
ml_collections loads the config file, before `main` runs, so both steps are wrapped. A
preempted run (SIGTERM: the loop saves and stops) and Ctrl-C end with one line as well (exit
143 and 130), and SIGTERM outside the training loop leaves through the normal exit path, so the
workdir's lock is released.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags


def define_common_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--resume_changed and --verbose, on every training program."""
    flags.DEFINE_bool(
        "resume_changed",
        False,
        "With --resume: continue although the config differs from the workdir's run.json in "
        "keys that change the result (the changes are recorded in run.json and metrics.jsonl).",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "verbose",
        False,
        "On an error, print its traceback too; show orbax's and jax's INFO logs (off by default).",
        flag_values=flag_values,
    )


def _traceback_wanted(argv: Sequence[str]) -> bool:
    # Read from argv, not the flag: flag parsing itself may be what failed.
    if os.environ.get("ULMFIT_TRACEBACK", "") not in ("", "0"):
        return True
    return any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _innermost(error: BaseException) -> BaseException:
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    return error


def _unknown_key_message(error: BaseException, argv: Sequence[str]) -> str:
    """ml_collections' `AttributeError(KeyError("'batchsize'\\nDid you mean ..."))` of a
    misspelt override, as "unknown config key 'batchsize' in --config.train.batchsize=3: ..."."""
    text = error
    while isinstance(text, BaseException) and text.args:
        text = text.args[0]
    key, *hints = str(text).splitlines() or [""]
    key = key.strip("'\"")
    override = next(
        (a for a in argv if a.startswith("--config.") and key in a.split("=", 1)[0][2:].split(".")),
        None,
    )
    message = f"unknown config key {key!r}" + (f" in {override}" if override else "")
    if hints:
        hint = _one_line(" ".join(hints))
        message += f": {hint[:1].lower()}{hint[1:]}"
    return message


def flag_error_message(error: BaseException, argv: Sequence[str]) -> str:
    """One line for an error raised while parsing flags or loading the config file."""
    if isinstance(error, (AttributeError, KeyError)):
        return _unknown_key_message(error, argv)
    text = str(error)
    if "Traceback (most recent call last)" in text:
        # config_flags pastes the config file's traceback into the flag error: keep the cause.
        inner = _innermost(error)
        text = str(inner) if isinstance(inner, ValueError) else f"{type(inner).__name__}: {inner}"
    return _one_line(text)


def fail(program: str, message: str, argv: Sequence[str], status: int = 2) -> NoReturn:
    if _traceback_wanted(argv):
        traceback.print_exc()
    print(f"{program}: error: {_one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(status)


def _terminate(signum, frame) -> None:
    # Outside the training loop (whose `Run` handles SIGTERM itself): unwind, so `with` blocks
    # release the workdir's lock.
    raise SystemExit(128 + signum)


def run_program(
    program: str, main: Callable[[list[str]], None], flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """`app.run(main)` with one-line errors (module docstring)."""
    argv = list(sys.argv)

    def parse(argv: list[str]) -> list[str]:
        try:
            return flag_values(argv)
        except Exception as error:  # noqa: BLE001 - every failure here is the input's
            fail(program, flag_error_message(error, argv), argv)

    def checked_main(args: list[str]) -> None:
        # Imported here, not at the top: `--help` should not wait for JAX.
        from ulmfit_jax.core.runner.checkpointing import show_library_logs
        from ulmfit_jax.core.runner.run import Preempted
        from ulmfit_jax.core.runner.workdir import WorkdirInUse

        show_library_logs(_traceback_wanted(argv))

        # Errors of user input: a config value the code refuses; a file that is missing,
        # unreadable or corrupt; a workdir that is read-only or held by another run.
        user_errors = (ValueError, OSError, WorkdirInUse)
        try:
            main(args)
        except Preempted as error:
            print(
                f"{program}: preempted: saved step {error}; continue with --resume",
                file=sys.stderr,
            )
            sys.exit(128 + signal.SIGTERM)
        except KeyboardInterrupt:
            print(f"{program}: interrupted", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        except user_errors as error:
            fail(program, str(error), argv)

    signal.signal(signal.SIGTERM, _terminate)
    app.run(checked_main, argv=argv, flags_parser=parse)
