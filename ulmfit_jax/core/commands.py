"""Tool programs with subcommands (`elmo-jax embed ...`, `python -m ulmfit_jax convert ...`) on
absl flags, the flag library of the `train.*` programs.

    PROGRAM COMMAND [--flag=value | --flag value | --bool | --nobool | POSITIONAL]...

The command word comes first; then the command's absl flags and its positional arguments in any
order (absl's GNU-style parsing). Each call parses into a fresh `flags.FlagValues`, so a program
can be run many times in one process (tests, notebooks) and never touches the global
`flags.FLAGS` of the training programs.

A mistake on the command line (an unknown command or flag, a bad value, a missing argument, a
refused combination) prints one line, `PROGRAM: error: MESSAGE`, and exits with status 2
(`SystemExit`, as argparse does); `-h`/`--help` prints the command's flags. What happens after
parsing is the command's own: `run` returns the exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from absl import flags


class UsageError(ValueError):
    """A refused combination of flags, found by a command's `check`."""


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
      name: the word that selects it (`embed`).
      help: one line for the program's usage.
      define: defines the command's flags on the `FlagValues` it is given.
      positionals: the names of its positional arguments, in order (`("INPUT", "OUTPUT")`).
      run: `run(flag_values, positionals) -> exit status`, after parsing and `check`.
      check: raises `UsageError` for a refused combination of flags.
    """

    name: str
    help: str
    define: Callable[[flags.FlagValues], None]
    positionals: tuple[str, ...]
    run: Callable[[flags.FlagValues, list[str]], int]
    check: Callable[[flags.FlagValues], None] = lambda flag_values: None


def usage_error(program: str, message: str) -> NoReturn:
    """One line on stderr and exit status 2."""
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _usage(program: str, commands: Sequence[Command]) -> str:
    lines = [f"usage: {program} COMMAND [FLAGS] ARGUMENTS  ({program} COMMAND --help)", ""]
    lines += [f"  {c.name} {' '.join(c.positionals)}: {c.help}" for c in commands]
    return "\n".join(lines)


def _command_help(program: str, command: Command, flag_values: flags.FlagValues) -> str:
    head = f"usage: {program} {command.name} [FLAGS] {' '.join(command.positionals)}"
    lines = [head, "", command.help, ""]
    for name in sorted(flag_values):
        flag = flag_values[name]
        default = "" if flag.default is None else f" (default: {flag.default})"
        lines.append(f"  --{name}: {flag.help}{default}")
    return "\n".join(lines)


def parse(
    program: str, commands: Sequence[Command], argv: Sequence[str]
) -> tuple[Command, flags.FlagValues, list[str]] | None:
    """The command, its parsed flags and its positional arguments; None after printing help."""
    by_name = {c.name: c for c in commands}
    argv = [str(a) for a in argv]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(program, commands))
        if argv:
            return None
        usage_error(program, f"give a command: {', '.join(by_name)}")
    name, rest = argv[0], argv[1:]
    if name not in by_name:
        usage_error(program, f"unknown command {name!r}: expected one of {', '.join(by_name)}")
    command = by_name[name]
    flag_values = flags.FlagValues()
    command.define(flag_values)
    if "-h" in rest or "--help" in rest:
        print(_command_help(program, command, flag_values))
        return None
    try:
        positionals = flag_values([program, *rest])[1:]
    except flags.Error as error:
        usage_error(program, str(error).splitlines()[0])
    if len(positionals) != len(command.positionals):
        usage_error(
            program,
            f"{name} takes {len(command.positionals)} arguments, "
            f"{' '.join(command.positionals)}; got {len(positionals)}: {positionals}",
        )
    try:
        command.check(flag_values)
    except UsageError as error:
        usage_error(program, str(error))
    return command, flag_values, positionals


def run_commands(program: str, commands: Sequence[Command], argv: Sequence[str] | None) -> int:
    """Parse `argv` (default `sys.argv[1:]`) and run the command; returns its exit status."""
    parsed = parse(program, commands, sys.argv[1:] if argv is None else argv)
    if parsed is None:
        return 0
    command, flag_values, positionals = parsed
    return command.run(flag_values, positionals)
