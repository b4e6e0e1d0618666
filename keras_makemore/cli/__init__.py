"""The `keras-makemore` command: a thin layer over the Python API.

The flags of `train`, `lr-find` and `sweep` are generated from `TrainConfig`'s
fields (their help, choices and defaults live in `keras_makemore.training.config`). A
`UserError` that names a Python argument is printed with that argument's flag
in its place, as one line, with exit status 2.
"""

import argparse
import os
import re
import sys

from keras_makemore.cli.flags import Parser
from keras_makemore.cli.output import stop_writing_stdout, writing
from keras_makemore.cli.runs import add_export, add_plot, add_report
from keras_makemore.cli.sample import add_sample, add_score
from keras_makemore.cli.search import add_sweep, add_tune
from keras_makemore.cli.train import add_evaluate, add_lr_find, add_train


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="keras-makemore",
        description="makemore's character-level language models in Keras: the MLP of Bengio et al. 2003 (makemore "
                    "part 2) by default, and the others of makemore and its lectures (--model).",
    )
    from keras_makemore import __version__

    parser.add_argument("--version", action="version", version=f"keras-makemore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train(sub)
    add_lr_find(sub)
    add_evaluate(sub)
    add_sample(sub)
    add_score(sub)
    add_plot(sub)
    add_sweep(sub)
    add_tune(sub)
    add_report(sub)
    add_export(sub)
    for command in sub.choices.values():
        command.set_defaults(argument_flags=_argument_flags(command), command_parser=command)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace | None:
    """The command line's arguments, or None when no command is given.

    The command's own parser reads its arguments intermixed (`score RUN --json
    emma` scores emma), and reports an unknown flag with its own `--help`.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return None
    command = args.command_parser
    return command.parse_intermixed_args(argv[argv.index(args.command) + 1:],
                                         argparse.Namespace(command=args.command))


def _argument_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Python argument name -> how the command line spells it: `top_k` -> `--top-k`, `run_dir` -> `RUN_DIR`."""
    flags = {}
    for action in parser._actions:  # argparse lists a parser's arguments nowhere public
        long = [o for o in action.option_strings if o.startswith("--")]
        flags[action.dest] = long[0] if long else (action.metavar or action.dest.upper())
    return flags


def _in_flag_terms(error, argument_flags: dict[str, str]) -> str:
    """The `UserError`'s message with Python argument names replaced by their flags.

    The argument at fault becomes its flag, and so does any argument written
    as `name=value` (`--flag value`; `name=True` is the flag alone, and
    `name=False` its `--no-` twin, which `argparse.BooleanOptionalAction` adds).
    """
    message = str(error)

    def flag_of(match):
        name, value = match[1], match[2]
        flag = argument_flags.get(name)
        if flag is None or (name != error.argument and value is None):
            return match[0]
        if value == "False" and flag.startswith("--"):
            return "--no-" + flag[2:]
        return flag if value in (None, "True") else f"{flag} {value}"

    return re.sub(r"(?<![\w./-])([a-z][a-z0-9_]*)(?:=([^\s,;:)]+))?(?![\w/-])", flag_of, message)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter hidden, unless the user asked for logs."""
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        import tensorflow  # noqa: F401
        return
    from keras_makemore.quiet import quiet_stderr

    with quiet_stderr():
        import tensorflow  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args is None:
        build_parser().print_help()
        return 0
    _import_tensorflow_quietly()
    from keras_makemore.errors import UserError

    try:
        try:
            return args.func(args)
        finally:
            sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
    except BrokenPipeError:
        stop_writing_stdout()
        return 0  # the reader has what it wanted: not an error
    except UserError as e:
        print(f"keras-makemore: error: {_in_flag_terms(e, args.argument_flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-makemore: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from keras_makemore.atomic import disk_error
        from keras_makemore.data.streaming import failure_behind

        failure = failure_behind(e)  # a streamed data file's error, which tf.data rewrapped
        if failure is not None:
            print(f"keras-makemore: error: {_in_flag_terms(failure, args.argument_flags)}", file=sys.stderr)
            return 2
        disk = disk_error(e)
        if disk is None:
            raise
        code, filename = disk
        print(f"keras-makemore: error: {os.strerror(code).lower()}{writing(filename)}: free some space or write elsewhere, "
              "then run the command again (what was saved before is intact)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
