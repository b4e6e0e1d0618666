"""`train`, `lr-find` and `evaluate`."""

import json
import os
import sys
import time
from pathlib import Path

from keras_makemore.cli.flags import (
    SCHEDULE_FIELDS,
    TRAIN_FIELDS,
    add_config_flag,
    add_model_flags,
    config_from_args,
    learning_rate,
    non_negative_int,
    preset_values,
)
from keras_makemore.cli.output import OutputMayGoAway, writing
from keras_makemore.models import DEFAULT_MODEL, MODEL_NAMES
from keras_makemore.training.presets import DEFAULT_PRESET


def add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model into a run directory",
        description=f"Train a language model (--model: {DEFAULT_MODEL} by default; {', '.join(MODEL_NAMES[1:])}) "
                    "with model.fit and save model, vocabulary, config and history into a run "
                    "directory. With no flags: the lecture's network (--preset "
                    f"{DEFAULT_PRESET}) on makemore's names.txt. Flags override the preset's values.",
    )
    add_model_flags(p)
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--out", dest="run_dir", metavar="RUN_DIR", help="run directory to create (default: runs/<date-time>)")
    runs.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint, with its own settings")
    length = p.add_mutually_exclusive_group()
    for name in SCHEDULE_FIELDS:
        target = length if name in ("steps", "epochs") else p
        if name == "lr":
            add_config_flag(target, name, type=learning_rate, metavar="RATE|auto",
                             help=f"{TRAIN_FIELDS['lr'].metadata['help']}{preset_values('lr')}; "
                                  "auto: run lr-find first and train with its suggestion")
        else:
            add_config_flag(target, name)
    p.add_argument("--samples", dest="num_samples", type=non_negative_int, default=5, metavar="N",
                   help="words printed after each validation pass (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or samples")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log losses, learning rate and the embedding projector into RUN_DIR/tensorboard")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from keras_makemore.errors import UserError

    if args.resume:
        args.argument_flags["run_dir"] = "--resume"
        given = [name for name in TRAIN_FIELDS if getattr(args, name, None) is not None] + (
            ["preset"] if args.preset is not None else [])
        if given:
            raise UserError(f"{given[0]} cannot change when resuming: a resumed run keeps its own settings; "
                            "drop it, or train a new run", argument=given[0])
    if "" in (args.resume, args.run_dir):
        raise UserError("run_dir must name a directory, got an empty string", argument="run_dir")
    config = None if args.resume else config_from_args(args)
    run_dir = Path(args.resume or args.run_dir or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    stdout, sys.stdout = sys.stdout, OutputMayGoAway(sys.stdout)  # `train | head` trains to the end all the same
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
        print(f"keras-makemore: error: {os.strerror(code).lower()}{writing(filename)}: training stopped, and "
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


def add_lr_find(sub) -> None:
    p = sub.add_parser(
        "lr-find", help="sweep the learning rate and suggest one",
        description="Train the model of `train` (same flags) one step at each of a range of "
                    "learning rates, plot loss against rate, and suggest a rate. Writes lr_find.png, "
                    "lr_find.csv and lr_find.json into the run directory; `train --out` the same "
                    "directory afterwards, or use `train --lr auto` to do both at once.",
    )
    add_model_flags(p)
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

    config = config_from_args(args)
    out = Path(args.run_dir or Path("runs") / time.strftime("lr-find-%Y%m%d-%H%M%S"))
    given = {name: getattr(args, name) for name in _LR_FINDER_FLAGS if getattr(args, name) is not None}
    result = find_lr_for_config(config, out, **given)
    print(result.summary())
    rate = _round_rate(result.learning_rate)
    print(f"suggested learning rate: {rate:g}")
    print(f"plot and tables in {out}  (next: keras-makemore train --out {out} --lr {rate:g})")
    return 0


def add_evaluate(sub) -> None:
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
