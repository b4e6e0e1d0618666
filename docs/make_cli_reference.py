#!/usr/bin/env python3
"""Write docs/cli.md from the `keras-makemore` argument parser, so the reference cannot drift.

    python docs/make_cli_reference.py           # rewrite docs/cli.md
    python docs/make_cli_reference.py --check   # exit 1 if docs/cli.md is out of date

The tables are built from the parser's actions (flags, metavars, defaults,
choices, help), not from argparse's formatted help, whose layout changes
between Python versions.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from keras_makemore.cli import build_parser  # noqa: E402

OUT = Path(__file__).resolve().parent / "cli.md"


def _help_text(action: argparse.Action) -> str:
    text = (action.help or "").replace("%%", "%")
    if "%(" in text:
        text = (action.help or "") % {**vars(action), "prog": ""}
    return text.replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    names = ", ".join(action.option_strings) or (action.metavar or action.dest)
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or (action.dest.upper() if not action.choices else "{" + ",".join(map(str, action.choices)) + "}")
        names += f" {metavar}" + (f" [{metavar} ...]" if action.nargs == "+" else "")
    return f"`{names}`"


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
        return ""
    value = action.default
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _command_section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `keras-makemore {name}`", "", parser.description or "", "",
             "| argument | default | meaning |", "| --- | --- | --- |"]
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._HelpAction):
            continue
        lines.append(f"| {_flag(action)} | {_default(action)} | {_help_text(action)} |")
    return lines + [""]


def render() -> str:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["# CLI reference", "",
             "Generated from the argument parser by `python docs/make_cli_reference.py`; "
             "`tests/test_docs.py` checks that it is current. `keras-makemore COMMAND --help` prints the same.",
             "", parser.description or "", ""]
    lines += [f"- [`{name}`](#keras-makemore-{name}): {choice.help}" for name, choice in
              ((a.dest, a) for a in commands._choices_actions)]
    lines.append("")
    for name, sub in commands.choices.items():
        lines += _command_section(name, sub)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    check = args.parse_args(argv).check
    text = render()
    if check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python docs/make_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
