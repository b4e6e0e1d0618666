"""The `keras-makemore` command: a thin layer over the Python API."""

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
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


def _add_model_flags(p) -> None:
    """The data, network and optimizer flags that `train` and `lr-find` share."""
    p.add_argument("--data", metavar="FILE", help="UTF-8 text file, one word a line (default: makemore's names.txt, downloaded once)")
    p.add_argument("--block-size", type=int, default=3, metavar="N", help="characters of context (default 3)")
    p.add_argument("--embed-dim", type=int, default=10, metavar="N", help="embedding size (default 10)")
    p.add_argument("--hidden", type=int, default=200, metavar="N", help="tanh hidden units (default 200)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="minibatch size (default 32)")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"], help="default sgd, as in the lecture")
    p.add_argument("--seed", type=int, default=42, help="seed of weights and minibatches (default 42)")
    p.add_argument("--split-seed", type=int, default=42, help="seed of the 80/10/10 split (default 42: the lecture's)")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model into a run directory",
        description="Train the MLP language model with model.fit and save model, vocabulary, "
                    "config and history into a run directory. With no flags: the lecture's "
                    "network and schedule on makemore's names.txt.",
    )
    _add_model_flags(p)
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (default: runs/<date-time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=200_000, metavar="N", help="optimizer steps (default 200000)")
    length.add_argument("--epochs", type=int, metavar="N", help="passes over the training words, instead of --steps")
    p.add_argument("--lr", type=_learning_rate, default=0.1,
                   help="initial learning rate (default 0.1); auto: run lr-find first and train with its suggestion")
    p.add_argument("--lr-schedule", default="step", choices=["step", "cosine", "constant"],
                   help="step: rate/10 half-way, as in the lecture (default); cosine: decay to 1%%; constant")
    p.add_argument("--lr-drop", type=_lr_drop, action="append", default=[], metavar="STEP:RATE",
                   help="switch to RATE at STEP (repeatable); replaces --lr-schedule. "
                        "The lecture: --lr 0.1 --lr-drop 100000:0.01")
    p.add_argument("--eval-every", type=int, default=10_000, metavar="N", help="steps between validation passes (default 10000)")
    p.add_argument("--samples", type=int, default=5, metavar="N", help="words printed after each validation pass (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or samples")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from keras_makemore.errors import UserError
    from keras_makemore.evaluation import evaluate_splits
    from keras_makemore.runs import Run
    from keras_makemore.sampling import novelty, sample_words
    from keras_makemore.training import TrainConfig, train

    if args.resume and args.out:
        raise UserError("pass either --resume RUN_DIR or --out RUN_DIR, not both")
    auto_lr = args.lr == "auto"
    if auto_lr and args.resume:
        raise UserError("--lr auto chooses the rate of a new run: drop it to resume, the run keeps its rate")
    config = TrainConfig(
        data=args.data, block_size=args.block_size, embed_dim=args.embed_dim,
        hidden_units=args.hidden, batch_size=args.batch_size, steps=args.steps,
        epochs=args.epochs, optimizer=args.optimizer, lr=0.1 if auto_lr else args.lr,
        lr_schedule=args.lr_schedule, lr_drops=args.lr_drop, seed=args.seed,
        split_seed=args.split_seed, eval_every=args.eval_every,
    )
    run_dir = Path(args.resume or args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    if auto_lr:
        from keras_makemore.training import find_lr_for_config

        found = find_lr_for_config(config, run_dir)
        config.lr = _round_rate(found.learning_rate)
        print(f"lr-find: training with --lr {config.lr:g} ({found.suggest} rule; "
              f"curve in {run_dir / 'lr_find.png'})")
    result = train(config, run_dir, verbose=0 if args.quiet else "auto",
                   num_samples=args.samples, resume=bool(args.resume))
    run = Run.load(run_dir)
    losses = evaluate_splits(run.model, result.corpus, ("train", "val"))
    words = sample_words(run.model, run.vocab, run.config.block_size, 10, seed=run.config.seed,
                         max_length=run.max_length)
    print(f"train loss {losses['train'].nll:.4f}  val loss {losses['val'].nll:.4f}")
    print(f"samples ({novelty(words, result.corpus.split.train):.0%} novel): {' '.join(words)}")
    print(f"run saved in {run_dir}  (next: keras-makemore sample {run_dir})")
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
    p.add_argument("--out", metavar="DIR", help="directory for the plot and tables (default: runs/lr-find-<date-time>)")
    p.add_argument("--start-lr", type=float, default=1e-7, metavar="LR", help="first rate (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, metavar="LR", help="last rate (default 10)")
    p.add_argument("--num-steps", type=int, default=100, metavar="N", help="steps of the sweep, one per rate (default 100)")
    p.add_argument("--mode", default="exponential", choices=["exponential", "linear"], help="spacing of the rates (default exponential)")
    p.add_argument("--smoothing", type=float, default=None, metavar="BETA",
                   help="beta of the loss's moving average (default 1 - 50/num-steps within [0.5, 0.98]; 0: none)")
    p.add_argument("--diverge-factor", type=float, default=4.0, metavar="F",
                   help="stop once the smoothed loss passes F times its lowest value (default 4)")
    p.add_argument("--suggest", default="valley", choices=["valley", "steepest", "minimum"],
                   help="the rule whose rate is printed (default valley, as fastai)")
    p.set_defaults(func=_lr_find)


def _lr_find(args) -> int:
    from keras_makemore.training import TrainConfig, find_lr_for_config

    config = TrainConfig(
        data=args.data, block_size=args.block_size, embed_dim=args.embed_dim, hidden_units=args.hidden,
        batch_size=args.batch_size, optimizer=args.optimizer, seed=args.seed, split_seed=args.split_seed,
    )
    out = Path(args.out or Path("runs") / time.strftime("lr-find-%Y%m%d-%H%M%S"))
    result = find_lr_for_config(
        config, out, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_steps, mode=args.mode,
        smoothing=args.smoothing, diverge_factor=args.diverge_factor, suggest=args.suggest,
    )
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
    from keras_makemore.evaluation import evaluate_splits, fit_verdict
    from keras_makemore.runs import Run

    run = Run.load(args.run_dir)
    corpus = run.corpus_from(args.data) if args.data else run.corpus()
    losses = evaluate_splits(run.model, corpus)
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
    p = sub.add_parser("sample", help="sample new words from a trained run",
                       description="Sample words from a run; report how many are novel (not training words).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("-n", "--num", type=int, default=20, metavar="N", help="number of words (default 20)")
    p.add_argument("--seed", type=int, default=None, help="seed; the same seed gives the same words (default: random)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="softmax temperature > 0 (default 1.0)")
    p.add_argument("--top-k", type=_positive_int, default=None, metavar="K", help="sample only among the K likeliest characters")
    p.add_argument("--prefix", default="", metavar="P", help="start every word with P")
    p.add_argument("--max-length", type=_positive_int, default=None, metavar="N", help="cut words at N characters")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_sample)


def _sample(args) -> int:
    from keras_makemore.errors import UserError
    from keras_makemore.runs import Run
    from keras_makemore.sampling import novelty, sample_words

    run = Run.load(args.run_dir)
    words = sample_words(run.model, run.vocab, run.config.block_size, args.num, seed=args.seed,
                         temperature=args.temperature, top_k=args.top_k, prefix=args.prefix,
                         max_length=args.max_length or run.max_length)
    try:
        novel = novelty(words, run.corpus().split.train)
    except UserError:
        novel = None  # the training data moved away: the words are still fine
    if args.json:
        print(json.dumps({"samples": words, "novelty": novel, "seed": args.seed,
                          "temperature": args.temperature, "top_k": args.top_k, "prefix": args.prefix},
                         ensure_ascii=False))
        return 0
    for w in words:
        print(w)
    if novel is not None:
        print(f"# {novel:.0%} novel (not in the training words)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-makemore",
        description="Character-level MLP language model (Bengio et al. 2003, makemore part 2) in Keras.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_lr_find(sub)
    _add_evaluate(sub)
    _add_sample(sub)
    return parser


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up chatter hidden, unless the user asked for logs.

    TensorFlow's runtime prints CUDA probes to stderr while it loads, before
    `TF_CPP_MIN_LOG_LEVEL` takes effect, so stderr is muted at the file
    descriptor level for the import alone.
    """
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _import_tensorflow_quietly()
    from keras_makemore.errors import UserError

    try:
        return args.func(args)
    except UserError as e:
        print(f"keras-makemore: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-makemore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
