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


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model into a run directory",
        description="Train the MLP language model with model.fit and save model, vocabulary, "
                    "config and history into a run directory. With no flags: the lecture's "
                    "network and schedule on makemore's names.txt.",
    )
    p.add_argument("--data", metavar="FILE", help="UTF-8 text file, one word a line (default: makemore's names.txt, downloaded once)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (default: runs/<date-time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--block-size", type=int, default=3, metavar="N", help="characters of context (default 3)")
    p.add_argument("--embed-dim", type=int, default=10, metavar="N", help="embedding size (default 10)")
    p.add_argument("--hidden", type=int, default=200, metavar="N", help="tanh hidden units (default 200)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="minibatch size (default 32)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=200_000, metavar="N", help="optimizer steps (default 200000)")
    length.add_argument("--epochs", type=int, metavar="N", help="passes over the training words, instead of --steps")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"], help="default sgd, as in the lecture")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    p.add_argument("--lr-schedule", default="step", choices=["step", "cosine", "constant"],
                   help="step: rate/10 half-way, as in the lecture (default); cosine: decay to 1%%; constant")
    p.add_argument("--lr-drop", type=_lr_drop, action="append", default=[], metavar="STEP:RATE",
                   help="switch to RATE at STEP (repeatable); replaces --lr-schedule. "
                        "The lecture: --lr 0.1 --lr-drop 100000:0.01")
    p.add_argument("--seed", type=int, default=42, help="seed of weights and minibatches (default 42)")
    p.add_argument("--split-seed", type=int, default=42, help="seed of the 80/10/10 split (default 42: the lecture's)")
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
    config = TrainConfig(
        data=args.data, block_size=args.block_size, embed_dim=args.embed_dim,
        hidden_units=args.hidden, batch_size=args.batch_size, steps=args.steps,
        epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
        lr_schedule=args.lr_schedule, lr_drops=args.lr_drop, seed=args.seed,
        split_seed=args.split_seed, eval_every=args.eval_every,
    )
    run_dir = Path(args.resume or args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
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
    p = sub.add_parser("sample", help="sample new words from a trained run or an exported model",
                       description="Sample words from a run, a .tflite file or a SavedModel from `keras-makemore "
                                   "export`; report how many are novel (not training words).")
    p.add_argument("run_dir", metavar="RUN_DIR|MODEL", help="run directory, .tflite file or SavedModel directory")
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

    source = Path(args.run_dir)
    if source.suffix == ".tflite" or (source / "saved_model.pb").exists():
        from keras_makemore.exported import ExportedModel
        from keras_makemore.runs import run_of_export

        model = ExportedModel(source)
        vocab, block_size, max_length = model.vocab, model.block_size, model.max_length
        run = run_of_export(source)
    else:
        run = Run.load(source)
        model, vocab, block_size, max_length = run.model, run.vocab, run.config.block_size, run.max_length
    words = sample_words(model, vocab, block_size, args.num, seed=args.seed,
                         temperature=args.temperature, top_k=args.top_k, prefix=args.prefix,
                         max_length=args.max_length or max_length)
    try:
        novel = novelty(words, run.corpus().split.train) if run else None
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


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a run to a SavedModel and a LiteRT .tflite file for devices",
                       description="Write RUN_DIR/export/: a SavedModel and a .tflite file with the signatures "
                                   "next_token, generate, generate_with_uniforms and decode, and export.json; "
                                   "then compare the .tflite model with Keras on every val context.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"],
                   help="none: float32 (default); float16: float16 weights; dynamic: int8 weights; "
                        "int8: int8 weights and activations, calibrated on training contexts")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with Keras on the val split")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from keras_makemore.export import SIGNATURES, export_run

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
    parser = argparse.ArgumentParser(
        prog="keras-makemore",
        description="Character-level MLP language model (Bengio et al. 2003, makemore part 2) in Keras.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_sample(sub)
    _add_export(sub)
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
