"""Tool programs with subcommands (`elmo-jax embed ...`, `python -m ulmfit_jax convert ...`) on
absl flags, the flag library of the `train.*` programs.

    PROGRAM COMMAND [--flag=value | --flag value | --bool | --nobool | POSITIONAL]...

The command word comes first; then the command's absl flags and its positional arguments in any
order (absl's GNU-style parsing). A program without commands (`train.demo`, `train.reproduce`)
uses `parse_flags` alone. Each call parses into a fresh `flags.FlagValues`, so a program
can be run many times in one process (tests, notebooks) and never touches the global
`flags.FLAGS` of the training programs.

A mistake on the command line (an unknown command or flag, a bad value, a missing argument, a
refused combination) prints one line, `PROGRAM: error: MESSAGE`, and exits with status 2
(`SystemExit`, as argparse does); `-h`/`--help` prints the command's flags and exits with status
0. What happens after parsing is the command's own: `run` returns the exit status.
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
      positionals: the names of its positional arguments, in order (`("INPUT", "OUTPUT")`).
      define: defines the command's flags on the `FlagValues` it is given.
      run: `run(flag_values, positionals) -> exit status`, after parsing and `check`; the first
        line of its docstring is the command's help.
      check: raises `UsageError` for a refused combination of flags.
    """

    name: str
    positionals: tuple[str, ...]
    define: Callable[[flags.FlagValues], None]
    run: Callable[[flags.FlagValues, list[str]], int]
    check: Callable[[flags.FlagValues], None] = lambda flag_values: None

    @property
    def help(self) -> str:
        """One line for the usage: the first line of `run`'s docstring."""
        return (self.run.__doc__ or "").strip().split("\n")[0].rstrip(".")


def define_text_flags(flag_values: flags.FlagValues, helps: dict[str, str]) -> None:
    """String flags that default to None (not given), one per `name: help`."""
    for name, help in helps.items():
        flags.DEFINE_string(name, None, help, flag_values=flag_values)


def define_switches(flag_values: flags.FlagValues, helps: dict[str, str]) -> None:
    """Boolean flags that default to False (`--name` / `--noname`), one per `name: help`."""
    for name, help in helps.items():
        flags.DEFINE_bool(name, False, help, flag_values=flag_values)


def usage_error(program: str, message: str) -> NoReturn:
    """One line on stderr and exit status 2."""
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _usage(program: str, commands: Sequence[Command]) -> str:
    lines = [f"usage: {program} COMMAND [FLAGS] ARGUMENTS  ({program} COMMAND --help)", ""]
    lines += [f"  {c.name} {' '.join(c.positionals)}: {c.help}" for c in commands]
    return "\n".join(lines)


def _flags_help(head: str, about: str, flag_values: flags.FlagValues) -> str:
    lines = [head, "", about, ""]
    for name in sorted(flag_values):
        flag = flag_values[name]
        default = "" if flag.default is None else f" (default: {flag.default})"
        lines.append(f"  --{name}: {flag.help}{default}")
    return "\n".join(lines)


def parse_flags(
    program: str,
    define: Callable[[flags.FlagValues], None],
    argv: Sequence[str],
    *,
    positionals: tuple[str, ...] = (),
    about: str = "",
    command: str = "",
) -> tuple[flags.FlagValues, list[str]]:
    """Parse `argv` (the arguments after the program, or after its command word) into a fresh
    `FlagValues` on which `define` defined the flags; returns them and the positional
    arguments, which must be as many as `positionals` names. A mistake exits with one line and
    status 2 (`usage_error`); `-h`/`--help` prints the flags and exits with status 0."""
    argv = [str(a) for a in argv]
    flag_values = flags.FlagValues()
    define(flag_values)
    if "-h" in argv or "--help" in argv:
        head = f"usage: {' '.join(filter(None, (program, command)))} [FLAGS]"
        print(_flags_help(f"{head} {' '.join(positionals)}".rstrip(), about, flag_values))
        raise SystemExit(0)
    try:
        given = flag_values([program, *argv])[1:]
    except flags.Error as error:
        usage_error(program, str(error).splitlines()[0])
    if len(given) != len(positionals):
        what = f"{command} takes" if command else "takes"
        names = f", {' '.join(positionals)}" if positionals else ""
        usage_error(program, f"{what} {len(positionals)} arguments{names}; got {given}")
    return flag_values, given


def run_commands(program: str, commands: Sequence[Command], argv: Sequence[str] | None) -> int:
    """Parse `argv` (default `sys.argv[1:]`), then check and run the command it names; returns
    the command's exit status. `PROGRAM --help` lists the commands."""
    by_name = {c.name: c for c in commands}
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage(program, commands))
        if argv:
            return 0
        usage_error(program, f"give a command: {', '.join(by_name)}")
    if argv[0] not in by_name:
        usage_error(program, f"unknown command {argv[0]!r}: expected one of {', '.join(by_name)}")
    command = by_name[argv[0]]
    flag_values, positionals = parse_flags(
        program,
        command.define,
        argv[1:],
        positionals=command.positionals,
        about=command.help,
        command=command.name,
    )
    try:
        command.check(flag_values)
    except UsageError as error:
        usage_error(program, str(error))
    return command.run(flag_values, positionals)
