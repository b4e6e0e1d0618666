"""The `keras-makemore` command: a thin layer over the Python API.

The flags of `train`, `lr-find` and `sweep` are generated from `TrainConfig`'s
fields (their help, choices and defaults live in `keras_makemore.config`). A
`UserError` that names a Python argument is printed with that argument's flag
in its place, as one line, with exit status 2.
"""

import argparse
import dataclasses
import json
import os
import re
import sys
import time
import types
import typing
from pathlib import Path

from keras_makemore.models import DEFAULT_MODEL, MODEL_NAMES
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.search.space import SWEEP_GRID, SWEEP_STEPS, TUNE_MODELS, TUNE_SPACE, LogRange, TuneConfig
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import DEFAULT_PRESET, PRESETS, preset_name


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors on one line, like every other error of the command."""

    def error(self, message):
        command = self.prog.removeprefix("keras-makemore").strip()
        self.exit(2, f"keras-makemore: error: {command + ': ' if command else ''}{message} "
                     f"(see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _lr_drop(text: str) -> tuple[int, float]:
    try:
        step, rate = text.split(":")
        return int(step), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:RATE such as 100000:0.01, got {text!r}") from None


def _learning_rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.1, or auto, got {text!r}") from None


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_MODEL_FIELDS = ("model", "data", "block_size", "embed_dim", "hidden_units", "layers", "heads", "dropout",
                 "direct_connections", "batch_size", "pack_words",
                 "optimizer", "weight_decay", "xla", "threads", "seed", "split_seed", "strategy")
_SCHEDULE_FIELDS = ("steps", "epochs", "lr", "lr_schedule", "lr_drops", "eval_every", "eval_max_examples",
                    "early_stop")
_SWEEP_FIELDS = ("data", "batch_size", "steps", "optimizer", "lr", "lr_schedule", "seed", "split_seed", "eval_every")


def _flag(name: str, fields=_FIELDS) -> str:
    return "--" + (fields[name].metadata["flag"] or name.replace("_", "-"))


def _preset_values(name: str) -> str:
    """How `name` defaults: its value in each preset of the default model, or the one default they share.

    (The other models' presets are listed in docs/models.md, and their values in `train --model NAME` runs.)
    """
    default = TrainConfig().to_json()[name]  # field defaults, default factories included
    values = {preset: settings.get(name, default) for preset, settings in PRESETS.items()
              if settings.get("model", DEFAULT_MODEL) == DEFAULT_MODEL}
    if len(set(map(repr, values.values()))) > 1:
        return " (preset " + ", ".join(f"{preset}: {value}" for preset, value in values.items()) + ")"
    value = next(iter(values.values()))
    return "" if value in (None, False, []) else f" (default: {value})"


def _value_type(field: dataclasses.Field) -> type:
    """The type of a dataclass field's values, None aside: `int` for `int | None`."""
    kinds = typing.get_args(field.type) if isinstance(field.type, types.UnionType) else (field.type,)
    return next(k for k in kinds if k is not type(None))


def _add_config_flag(p, name: str, default=None, default_text: str | None = None, fields=_FIELDS,
                     **overrides) -> None:
    """The flag of `TrainConfig` field `name` (or of `fields`), typed, with its help and choices from its metadata."""
    field = fields[name]
    meta = field.metadata
    kind = _value_type(field)
    kwargs = dict(dest=name, default=default, metavar=meta["metavar"],
                  help=(meta["help"] + (_preset_values(name) if default_text is None else default_text)).replace(
                      "%", "%%"))
    if kind is bool:
        kwargs.update(action=argparse.BooleanOptionalAction)  # --no-NAME turns off a preset's True
        del kwargs["metavar"]
    elif typing.get_origin(kind) is list:
        kwargs.update(type=_lr_drop, action="append")
    elif meta["choices"]:
        kwargs.update(choices=meta["choices"], metavar=None)
    else:
        kwargs.update(type=kind)
    p.add_argument(_flag(name, fields), *("--" + alias for alias in meta.get("aliases", ())), **(kwargs | overrides))


def _add_model_flags(p) -> None:
    """`--preset` and the data, network and optimizer flags that `train` and `lr-find` share.

    They default to None, so that the preset's value, then `TrainConfig`'s, applies.
    """
    p.add_argument("--preset", choices=list(PRESETS),
                   help=f"named settings (default: the --model's own preset, or {DEFAULT_PRESET}); flags override them")
    for name in _MODEL_FIELDS:
        _add_config_flag(p, name)


def _config_from_args(args) -> TrainConfig:
    """`TrainConfig` of the named preset, with every flag the user gave on top."""
    overrides = {k: getattr(args, k) for k in _FIELDS if getattr(args, k, None) is not None}
    if overrides.get("lr") == "auto":
        del overrides["lr"]
    return TrainConfig.from_preset(preset_name(getattr(args, "preset", None), overrides.get("model")), **overrides)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model into a run directory",
        description=f"Train a language model (--model: {DEFAULT_MODEL} by default; {', '.join(MODEL_NAMES[1:])}) "
                    "with model.fit and save model, vocabulary, config and history into a run "
                    "directory. With no flags: the lecture's network (--preset "
                    f"{DEFAULT_PRESET}) on makemore's names.txt. Flags override the preset's values.",
    )
    _add_model_flags(p)
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--out", dest="run_dir", metavar="RUN_DIR", help="run directory to create (default: runs/<date-time>)")
    runs.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint, with its own settings")
    length = p.add_mutually_exclusive_group()
    for name in _SCHEDULE_FIELDS:
        target = length if name in ("steps", "epochs") else p
        if name == "lr":
            _add_config_flag(target, name, type=_learning_rate, metavar="RATE|auto",
                             help=f"{_FIELDS['lr'].metadata['help']}{_preset_values('lr')}; "
                                  "auto: run lr-find first and train with its suggestion")
        else:
            _add_config_flag(target, name)
    p.add_argument("--samples", dest="num_samples", type=_non_negative_int, default=5, metavar="N",
                   help="words printed after each validation pass (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or samples")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log losses, learning rate and the embedding projector into RUN_DIR/tensorboard")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from keras_makemore.errors import UserError

    if args.resume:
        args.argument_flags["run_dir"] = "--resume"
        given = [name for name in _FIELDS if getattr(args, name, None) is not None] + (
            ["preset"] if args.preset is not None else [])
        if given:
            raise UserError(f"{given[0]} cannot change when resuming: a resumed run keeps its own settings; "
                            "drop it, or train a new run", argument=given[0])
    if "" in (args.resume, args.run_dir):
        raise UserError("run_dir must name a directory, got an empty string", argument="run_dir")
    config = None if args.resume else _config_from_args(args)
    run_dir = Path(args.resume or args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    stdout, sys.stdout = sys.stdout, _OutputMayGoAway(sys.stdout)  # `train | head` trains to the end all the same
    try:
        return _train_into(args, config, run_dir)
    finally:
        sys.stdout = stdout


def _train_into(args, config, run_dir) -> int:
    from keras_makemore.analysis.evaluation import evaluate_splits
    from keras_makemore.errors import UserError
    from keras_makemore.sampling.words import novelty, printable, sample_words
    from keras_makemore.training.recipe import train
    from keras_makemore.training.run import Run
    from keras_makemore.training.rundir import CONFIG_FILE

    try:
        if args.lr == "auto":
            from keras_makemore.training.recipe import find_lr_for_config

            found = find_lr_for_config(config, run_dir)
            config.lr = _round_rate(found.learning_rate)
            print(f"lr-find: training with --lr {config.lr:g} ({found.suggest} rule; "
                  f"curve in {run_dir / 'lr_find.png'})")
        result = train(config, run_dir, verbose=0 if args.quiet else "auto",
                       num_samples=args.num_samples, resume=bool(args.resume), tensorboard=args.tensorboard)
        if not result.chief:
            print(f"worker finished: final loss {result.history['loss'][-1]:.4f}; the chief saved the run")
            return 0
    except KeyboardInterrupt:
        print(f"\nkeras-makemore: training interrupted; continue it with "
              f"`keras-makemore train --resume {run_dir}`", file=sys.stderr)
        return 130
    except OSError as e:
        from keras_makemore.atomic import disk_error

        disk = disk_error(e)
        if disk is None or not (run_dir / CONFIG_FILE).exists():
            raise  # nothing of the run was written yet: the general message says to run the command again
        code, filename = disk
        print(f"keras-makemore: error: {os.strerror(code).lower()}{_writing(filename)}: training stopped, and "
              f"what it saved is intact: free some space, then continue with "
              f"`keras-makemore train --resume {run_dir}`", file=sys.stderr)
        return 2
    run = Run.load(run_dir, model=result.model)
    try:
        losses = evaluate_splits(run.model, result.corpus, ("train", "val"),
                                 progress=sys.stdout.isatty() and not args.quiet)
        words = sample_words(run.model, run.vocab, run.config.block_size, 10, seed=run.config.seed,
                             max_length=run.max_length)
        known = result.corpus.known(words)
    except Exception as e:
        from keras_makemore.data.streaming import failure_behind

        failure = e if isinstance(e, UserError) else failure_behind(e)
        if not hasattr(failure, "problem"):  # not a streamed data file that changed
            raise
        raise UserError(f"{failure.problem}: the run finished and is saved in {run_dir}; put the original file "
                        f"back, then see its losses with `keras-makemore evaluate {run_dir}`", argument="data") from None
    print(f"train loss {losses['train'].nll:.4f}  val loss {losses['val'].nll:.4f}")
    print(f"samples ({novelty(words, known):.0%} novel):", *map(printable, words), sep="\n  ")
    print(f"run saved in {run_dir}  (next: keras-makemore sample {run_dir})")
    if args.tensorboard:
        print(f"TensorBoard logs in {run_dir / 'tensorboard'}  (view: tensorboard --logdir {run_dir / 'tensorboard'})")
    return 0


def _round_rate(rate: float) -> float:
    """Three significant digits: what is printed is exactly what is used."""
    return float(f"{rate:.3g}")


def _add_lr_find(sub) -> None:
    p = sub.add_parser(
        "lr-find", help="sweep the learning rate and suggest one",
        description="Train the model of `train` (same flags) one step at each of a range of "
                    "learning rates, plot loss against rate, and suggest a rate. Writes lr_find.png, "
                    "lr_find.csv and lr_find.json into the run directory; `train --out` the same "
                    "directory afterwards, or use `train --lr auto` to do both at once.",
    )
    _add_model_flags(p)
    p.add_argument("--out", dest="run_dir", metavar="DIR",
                   help="directory for the plot and tables (default: runs/lr-find-<date-time>)")
    # Defaults and choices are LRFinder's (see `keras_makemore.LRFinder`); a flag not given is not passed.
    sweep = p.add_argument_group("the sweep", "LRFinder's arguments; those not given take its defaults")
    sweep.add_argument("--start-lr", type=float, metavar="LR", help="first rate")
    sweep.add_argument("--end-lr", type=float, metavar="LR", help="last rate")
    sweep.add_argument("--num-steps", type=int, metavar="N", help="steps of the sweep, one per rate")
    sweep.add_argument("--mode", metavar="MODE", help="spacing of the rates: exponential or linear")
    sweep.add_argument("--smoothing", type=float, metavar="BETA",
                       help="beta of the loss's moving average (default: from the number of steps; 0: none)")
    sweep.add_argument("--diverge-factor", type=float, metavar="F",
                       help="stop once the smoothed loss passes F times its lowest value")
    sweep.add_argument("--suggest", metavar="RULE", help="the rule whose rate is printed: valley (as fastai), "
                                                         "steepest or minimum")
    p.set_defaults(func=_lr_find)


_LR_FINDER_FLAGS = ("start_lr", "end_lr", "num_steps", "mode", "smoothing", "diverge_factor", "suggest")


def _lr_find(args) -> int:
    from keras_makemore.training.recipe import find_lr_for_config

    config = _config_from_args(args)
    out = Path(args.run_dir or Path("runs") / time.strftime("lr-find-%Y%m%d-%H%M%S"))
    given = {name: getattr(args, name) for name in _LR_FINDER_FLAGS if getattr(args, name) is not None}
    result = find_lr_for_config(config, out, **given)
    print(result.summary())
    rate = _round_rate(result.learning_rate)
    print(f"suggested learning rate: {rate:g}")
    print(f"plot and tables in {out}  (next: keras-makemore train --out {out} --lr {rate:g})")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="losses on train/val/test and a fit verdict",
                       description="Mean NLL (nats), perplexity and bits per character on each split, "
                                   "and what the train/val gap says.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", metavar="FILE", help="evaluate on this file instead of the run's own data")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from keras_makemore.analysis.evaluation import evaluate_splits, fit_verdict
    from keras_makemore.training.run import Run

    run = Run.load(args.run_dir)
    corpus = run.corpus_from(args.data) if args.data else run.corpus()
    losses = evaluate_splits(run.model, corpus, progress=sys.stdout.isatty() and not args.json)
    verdict = fit_verdict(losses["train"].nll, losses["val"].nll)
    if args.json:
        print(json.dumps({"run_dir": str(run.path), "losses": {k: v.to_json() for k, v in losses.items()},
                          "verdict": verdict}))
        return 0
    print(f"{'split':<6} {'examples':>9} {'loss':>8} {'perplexity':>11} {'bits/char':>10}")
    for name, loss in losses.items():
        print(f"{name:<6} {loss.examples:>9,} {loss.nll:>8.4f} {loss.perplexity:>11.3f} {loss.bits_per_char:>10.4f}")
    print(verdict)
    return 0


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="sample new words from a trained run or an exported model",
                       description="Sample words from a run, a .tflite file or a SavedModel from `keras-makemore "
                                   "export`; report how many are novel (not training words). The same seed and "
                                   "options give the same words from all three. Words are printed as they are "
                                   "sampled, so -n can be large.")
    _add_source(p)
    p.add_argument("-n", "--num", dest="num_samples", type=int, default=20, metavar="N", help="number of words (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed, negative or not; the same seed gives the same words (default: random, printed with --json)")
    for field in dataclasses.fields(SamplingControls):
        _add_control_flag(p, field)
    p.add_argument("--new-only", action="store_true", help="only words that are not training words")
    p.add_argument("--exclude", metavar="FILE", help="never print the words of FILE (one a line)")
    p.add_argument("--max-draws", type=int, default=None, metavar="N",
                   help="with --new-only or --exclude: draw at most N words looking for new ones (default 100 x -n)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_sample)


def _add_source(p) -> None:
    """The model argument of `sample` and `score`, and `--trust-saved-model`."""
    p.add_argument("source", metavar="RUN_DIR|MODEL", help="run directory, .tflite file or SavedModel directory")
    p.add_argument("--trust-saved-model", action="store_true",
                   help="open a SavedModel that keras-makemore did not write (it runs its own graph: only for files you trust)")


def _open_source(args):
    """The model of `sample` or `score`; errors about the run directory name the command's argument."""
    from keras_makemore.artifacts.reader import open_model

    args.argument_flags["run_dir"] = args.argument_flags["source"]
    return open_model(args.source, trust_saved_model=args.trust_saved_model)


def _add_control_flag(p, field: dataclasses.Field) -> None:
    """The flag of `SamplingControls` field `field`, typed, with its help from the field's metadata."""
    default = "" if field.default in (None, "", 0) else f" (default: {field.default})"
    p.add_argument("--" + field.name.replace("_", "-"), type=_value_type(field),
                   default=field.default, metavar=field.metadata["metavar"],
                   help=(field.metadata["help"] + default).replace("%", "%%"))


_JSON_MAX_WORDS = 1_000_000  # --json holds every word in memory; plain output streams


_STREAMED_NOVELTY_WORDS = 100_000  # the novelty of a run with a streamed data file: of its first words sampled


def _sample(args) -> int:
    from keras_makemore.data.reading import read_words
    from keras_makemore.errors import UserError
    from keras_makemore.sampling.controls import resolve_seed
    from keras_makemore.sampling.words import iter_words, printable, printable_json

    opened = _open_source(args)
    if args.json and args.num_samples > _JSON_MAX_WORDS:
        raise UserError(f"num_samples must be at most {_JSON_MAX_WORDS:,} with json, which holds every word in "
                        f"memory, got {args.num_samples:,}: drop --json to stream the words", argument="num_samples")
    from keras_makemore.data.streaming import StreamedCorpus

    corpus = training = None
    try:
        corpus = opened.run.corpus() if opened.run else None
    except UserError:
        if args.new_only:
            raise
    streamed = isinstance(corpus, StreamedCorpus)  # its words stay on disk: novelty is found by searching the file
    if streamed and args.new_only:
        raise UserError(f"new_only holds the training words in memory, and the run's data file {corpus.path} is "
                        "streamed from disk for its size: leave new_only out, or pass --exclude with a smaller list "
                        "of words", argument="new_only")
    if corpus is not None and not streamed:
        training = set(corpus.split.train)
    if args.new_only and training is None:
        raise UserError(f"new_only needs the training words, and {args.source} is not in a run's export folder: "
                        "sample the run directory, or pass --exclude with the training words", argument="new_only")
    exclude = (training if args.new_only else set()) | set(read_words(args.exclude) if args.exclude else ())
    seed = resolve_seed(args.seed)
    controls = {name: getattr(args, name) for name in SamplingControls.names()}
    max_length = opened.max_length if args.max_length is None else args.max_length  # 0 is refused, not "unset"
    words = iter_words(opened.model, opened.vocab, opened.block_size, args.num_samples, seed, exclude=exclude,
                       max_draws=args.max_draws, **controls | {"max_length": max_length})
    found, novel, collected, checked = 0, 0, [], []
    for word in words:
        found += 1
        novel += training is not None and word not in training
        if streamed and len(checked) < _STREAMED_NOVELTY_WORDS:
            checked.append(word)
        if args.json:
            collected.append(word)
        else:
            print(printable(word))  # a word of the training data must not drive the terminal
    novelty = novel / found if training is not None and found else None
    if checked:  # the first words sampled, searched for in one pass over the file
        known = set(corpus.known(checked))
        novelty = sum(w not in known for w in checked) / len(checked)
    if args.json:
        print(printable_json({"samples": collected, "novelty": novelty, "seed": seed, "requested": args.num_samples,
                              **controls, "new_only": args.new_only, "exclude": args.exclude}))
    if found < args.num_samples:
        print(f"# found {found:,} of {args.num_samples:,} words: the others drawn were training words or excluded; "
              "raise --max-draws or --temperature to find more", file=sys.stderr)
    if novelty is not None and not args.json:
        print(f"# {novelty:.0%} novel (not in the training words)", file=sys.stderr)
    return 0


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="how likely a model finds given words",
                       description="Score words with a run, a .tflite file or a SavedModel: total log-probability, "
                                   "mean NLL per character (end marker included) and perplexity; most plausible "
                                   "first. Rank candidate names, or flag unlikely entries of a list.")
    _add_source(p)
    p.add_argument("words", nargs="*", metavar="WORD", help="words to score")
    p.add_argument("--file", metavar="FILE", help="also score the words of FILE, one a line")
    p.add_argument("--json", action="store_true",
                   help='print {"words": [{"word", "nll", "log_prob", "perplexity"}, ...]}')
    p.set_defaults(func=_score)


def _score(args) -> int:
    from keras_makemore.data.streaming import stream_threshold_bytes
    from keras_makemore.errors import UserError
    from keras_makemore.sampling.scoring import read_word_file, score_words
    from keras_makemore.sampling.words import printable, printable_json

    opened = _open_source(args)
    if args.file and Path(args.file).is_file() and Path(args.file).stat().st_size > stream_threshold_bytes():
        return _score_streamed(args, opened)
    words = list(args.words) + (read_word_file(args.file, opened.vocab) if args.file else [])
    if not words:
        raise UserError("words: give words to score, or a file of them with --file FILE", argument="words")
    scores = sorted(score_words(opened.model, opened.vocab, words), key=lambda s: (s.nll, s.word))
    if args.json:
        print(printable_json({"words": [s.to_json() for s in scores]}))
        return 0
    print(f"{'nll':>8} {'perplexity':>11} {'log_prob':>10}  word")
    for s in scores:
        print(f"{s.nll:>8.4f} {s.perplexity:>11.3f} {s.log_prob:>10.4f}  {printable(s.word)}")
    return 0


def _score_streamed(args, opened) -> int:
    """`score` of a file too big to hold (as `open_corpus` would stream it): read and scored a batch of lines at a
    time, the scores printed in file order (sorting would hold them all)."""
    import itertools

    from keras_makemore.sampling.scoring import iter_word_file, score_words

    for _ in iter_word_file(args.file, opened.vocab):  # a first pass checks every line: an error prints nothing else
        pass
    print(f"# {args.file} is scored as it is read, for its size: the scores come in file order, not sorted",
          file=sys.stderr)
    batches = itertools.chain([list(args.words)] if args.words else [], iter_word_file(args.file, opened.vocab))
    first = True
    if args.json:
        print('{"words": [', end="")
    else:
        print(f"{'nll':>8} {'perplexity':>11} {'log_prob':>10}  word")
    for batch in batches:
        for s in score_words(opened.model, opened.vocab, batch):
            if args.json:
                print(("" if first else ", ") + json.dumps(s.to_json(), ensure_ascii=False), end="")
            else:
                print(f"{s.nll:>8.4f} {s.perplexity:>11.3f} {s.log_prob:>10.4f}  {s.word}")
            first = False
    if args.json:
        print("]}")
    return 0


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw the embeddings and the loss curves of a run",
                       description="Write embeddings.png (every character at its embedding point, PCA-projected "
                                   "when the embedding has more than 2 dimensions) and loss.png (train and val "
                                   "loss with the learning rate) for a run.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="where the PNG files go (default: RUN_DIR)")
    p.set_defaults(func=_plot)


def _plot(args) -> int:
    from keras_makemore.analysis.plots import plot_run

    for path in plot_run(args.run_dir, args.out_dir):
        print(path)
    return 0


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train a grid of network sizes and compare them",
                       description="Train one run per cell of hidden units x embedding size x block size, "
                                   "each with the same seed and step budget, into OUT/<cell>; write OUT/sweep.csv "
                                   "and OUT/sweep.png. Run it again with the same flags to finish an "
                                   "interrupted sweep: finished cells are skipped.")
    for name, values in SWEEP_GRID.items():
        _add_config_flag(p, name, default=list(values), type=_positive_int, nargs="+",
                         help=f"{_FIELDS[name].metadata['help']} to try (default: {' '.join(map(str, values))})")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="sweep directory (default: sweeps/<date-time>)")
    defaults = TrainConfig(steps=SWEEP_STEPS)
    for name in _SWEEP_FIELDS:
        value = getattr(defaults, name)
        _add_config_flag(p, name, default=value, default_text="" if value is None else f" (default: {value})")
    p.set_defaults(func=_sweep)


def _sweep(args) -> int:
    _require_keras_tuner("sweep")
    import tensorflow as tf

    from keras_makemore.search.sweep import SWEEP_CSV, SWEEP_PNG, sweep

    tf.get_logger().setLevel("ERROR")  # one model per cell makes TF warn about retracing; that is expected
    out = Path(args.out_dir or Path("sweeps") / time.strftime("%Y%m%d-%H%M%S"))
    base = TrainConfig(**{name: getattr(args, name) for name in _SWEEP_FIELDS})
    rows = sweep(base, out, args.hidden_units, args.embed_dim, args.block_size)
    best = min(rows, key=lambda r: r["val_loss"])
    print(f"best val loss {best['val_loss']:.4f}: {best['cell']} ({best['params']:,} params, {best['verdict']})")
    print(f"table in {out / SWEEP_CSV}, plot in {out / SWEEP_PNG}")
    return 0


_TUNE_FIELDS = {f.name: f for f in dataclasses.fields(TuneConfig)}
_TUNE_ROWS = list(dict.fromkeys([*TUNE_SPACE, *(name for rows in TUNE_MODELS.values() for name in rows)]))


def _searched(name: str) -> str:
    """What `tune` tries for field `name` by default, per model type: "mlp: 3 4 5; wavenet: 4 8 16"."""
    described = {}
    for model, rows in TUNE_MODELS.items():
        values = rows.get(name, TUNE_SPACE.get(name))
        if values is not None:
            text = (f"{values.low:g}x to {values.high:g}x the preset's, in steps of 2x" if isinstance(values, LogRange)
                    and values.relative else f"{values.low:g} to {values.high:g} in steps of 2x"
                    if isinstance(values, LogRange) else " ".join(map(str, values)))
            described.setdefault(text, []).append(model)
    if len(described) == 1 and len(next(iter(described.values()))) == len(TUNE_MODELS):
        return next(iter(described))
    return "; ".join(f"{', '.join(models)}: {text}" for text, models in described.items())


def _add_tune(sub) -> None:
    p = sub.add_parser("tune", help="search for the network with the lowest val loss within a time budget",
                       description="Search TrainConfig's settings with KerasTuner (Hyperband, Bayesian, random or "
                                   "grid), each trial a real training run through engine.fit into OUT/search/, "
                                   "scored by its val loss. Write OUT/tune.csv, OUT/tune.png and OUT/best/ (the best "
                                   "trial's run directory), and print the best as a train command. Run it again "
                                   "with the same flags to continue it. Needs keras-makemore[tune].")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="search directory (default: tunes/<date-time>)")
    defaults = TuneConfig()
    for name in _TUNE_FIELDS:
        value = getattr(defaults, name)
        _add_config_flag(p, name, default=value, fields=_TUNE_FIELDS,
                         default_text="" if value is None else f" (default: {value})")
    for name in ("data", "split_seed", "seed"):
        _add_config_flag(p, name)
    for name in _TUNE_ROWS:
        _add_config_flag(p, name, nargs="+", help=f"{_FIELDS[name].metadata['help']}: the values to try; one "
                                                  f"value fixes it (default: {_searched(name)})".replace("%", "%%"))
    p.set_defaults(func=_tune)


def _require_keras_tuner(command: str) -> None:
    from keras_makemore.errors import UserError

    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        raise UserError(f"{command} needs KerasTuner, an optional extra: install it with "
                        "pip install 'keras-makemore[tune]'") from None


def _tune(args) -> int:
    _require_keras_tuner("tune")
    import tensorflow as tf

    from keras_makemore.search.tune import TUNE_CSV, TUNE_PNG, tune

    tf.get_logger().setLevel("ERROR")  # one model per trial makes TF warn about retracing; that is expected
    config = TuneConfig(**{name: getattr(args, name) for name in _TUNE_FIELDS})
    data_flags = {name: getattr(args, name) for name in ("data", "split_seed", "seed") if getattr(args, name) is not None}
    base = config.base_configs(**data_flags)
    fixed = {name: tuple(getattr(args, name)) for name in _TUNE_ROWS if getattr(args, name) is not None}
    out = Path(args.out_dir or Path("tunes") / time.strftime("%Y%m%d-%H%M%S"))
    try:
        result = tune(config, base, out, fixed)
    except KeyboardInterrupt:
        print("\nkeras-makemore: search interrupted; continue it by running the same command again",
              file=sys.stderr)
        return 130
    why = "the budget ended" if result.stopped == "budget" else "the search is complete"
    print(f"{len(result.rows)} trials in {result.seconds_used / 60:.1f} min of the {config.budget} budget; {why}")
    if result.best is None:
        print(f"no trial finished: give it a larger --budget (table in {out / TUNE_CSV})")
        return 0
    best = result.best
    print(f"best val loss {best['val_loss']:.4f}: trial {best['trial']} ({best['params']:,} params, "
          f"{best['steps_trained']:,} steps in {best['train_seconds']:.0f} s), run directory {result.best_dir}")
    if best["steps_trained"] < result.best_config.steps and not (result.best_dir / "history.json").exists():
        print(f"(Hyperband stopped trial {best['trial']} at step {best['steps_trained']:,}; the command trains all "
              f"{result.best_config.steps:,})")
    print("train it with: " + _train_command(result.best_config, config.preset_of(result.best_config.model)))
    print(f"table in {out / TUNE_CSV}, plot in {out / TUNE_PNG}")
    return 0


def _train_command(config: TrainConfig, preset: str) -> str:
    """The `keras-makemore train` command line of `config`: its model, the preset (unless the model's own),
    and a flag for each other value."""
    import shlex

    words = ["keras-makemore", "train", "--model", config.model]
    if preset != preset_name(None, config.model):
        words += ["--preset", preset]
    preset_config = TrainConfig.from_preset(preset, model=config.model)
    for name, field in _FIELDS.items():
        value = getattr(config, name)
        if value == getattr(preset_config, name) or value is None or value is False:
            continue
        if value is True:
            words.append(_flag(name))
        elif isinstance(value, list):
            words += [w for step, rate in value for w in (_flag(name), f"{step}:{rate!r}")]
        else:
            words += [_flag(name), str(value)]
    return shlex.join(words)


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write a Markdown report of a run",
                       description="Write RUN_DIR/report.md: settings, parameter count, losses per split with "
                                   "perplexity and bits/char, the fit verdict, sampled words with novelty, and "
                                   "the plots (drawn into RUN_DIR).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-n", "--num", dest="num_samples", type=_non_negative_int, default=20, metavar="N",
                   help="sampled words to list (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed of the samples (default: the run's seed)")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from keras_makemore.analysis.report import write_report

    print(write_report(args.run_dir, num_samples=args.num_samples, seed=args.seed))
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run to a SavedModel and a LiteRT .tflite file for devices",
                       description="Write RUN_DIR/export/: a SavedModel and a .tflite file with the signatures "
                                   "next_token, generate, score, decode and their fixed-shape twins for the "
                                   "browser, and export.json (with the SavedModel's sha256); then compare the "
                                   ".tflite model with Keras on every val context.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"],
                   help="none: float32 (default); float16: float16 weights; dynamic: int8 weights; "
                        "int8: int8 weights and activations, calibrated on training contexts")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with Keras on the val split")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from keras_makemore.artifacts.writer import SIGNATURES, export_run

    report = export_run(args.run_dir, args.quantize, check=not args.no_check)
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    print(f"saved model  {report.saved_model}")
    print(f"litert       {report.litert}  ({report.litert_bytes:,} bytes, quantize {report.quantize})")
    print(f"signatures   {', '.join(SIGNATURES)}")
    if report.check:
        c = report.check
        print(f"val check    {c.examples:,} contexts: max |p_litert - p_keras| {c.max_abs_diff:.2g}; "
              f"loss keras {c.keras_loss:.4f}, litert {c.exported_loss:.4f}")
    print(f"next: keras-makemore sample {report.litert}   or   python export/sample_tflite.py {report.litert}")
    return 0



def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="keras-makemore",
        description="makemore's character-level language models in Keras: the MLP of Bengio et al. 2003 (makemore "
                    "part 2) by default, and the others of makemore and its lectures (--model).",
    )
    from keras_makemore import __version__

    parser.add_argument("--version", action="version", version=f"keras-makemore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_lr_find(sub)
    _add_evaluate(sub)
    _add_sample(sub)
    _add_score(sub)
    _add_plot(sub)
    _add_sweep(sub)
    _add_tune(sub)
    _add_report(sub)
    _add_export(sub)
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


def _writing(filename: str | None) -> str:
    return f" writing {filename}" if filename else ""


class _OutputMayGoAway:
    """`sys.stdout` for a command that must finish whoever reads it (`train | head -2`): once the reader went away,
    what is written goes to /dev/null instead of raising `BrokenPipeError`."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _stop_writing_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _stop_writing_stdout()  # what is still buffered is written to /dev/null at the next flush
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _stop_writing_stdout() -> None:
    """The reader of stdout went away (`| head`): send what is left to /dev/null, so that exiting flushes quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
        _stop_writing_stdout()
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
        print(f"keras-makemore: error: {os.strerror(code).lower()}{_writing(filename)}: free some space or write elsewhere, "
              "then run the command again (what was saved before is intact)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
