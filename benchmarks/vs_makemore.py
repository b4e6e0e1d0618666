"""The Transformer side by side: `keras-makemore train --model transformer` against makemore.py's.

Both train on the lecture's 80/10/10 split of the packaged names.txt (the
script checks that the two sides' train and val words are the same) and are
scored by the same metric, the mean NLL per character of the whole val split,
end marker included (what `keras-makemore evaluate` prints). They run one
after the other, never at the same time, each in its own process:

- the peer: `python benchmarks/makemore_torch.py NAMES_TXT --seconds S`,
  makemore.py's Transformer, AdamW and loop with its defaults (batch 32,
  lr 5e-4; see that script for what differs from makemore.py), trained for
  `--seconds` of wall time, validating every `--peer-eval-every` steps;
- ours: `python -m keras_makemore train --model transformer --eval-every N`
  (its preset, plus `--ours-flags`), run in-process by this script with one
  extra Keras callback on `train`'s `fit` that stamps each validation with the
  seconds since `fit` began and the optimizer's step count, and stops
  training at the end of the last chunk of steps (of up to `--eval-every`)
  that fits in `--seconds` (the first chunk, with the XLA compilation, always
  runs); the val pass that ends the epoch then still runs. If the preset's
  steps end sooner, its curve ends there.

Each side's clock starts at its first training step (ours: `fit`'s
`on_train_begin`, so tracing and XLA compilation count) and includes its
validation passes; neither trains past the budget, and each validates once
more at its end. The time each process took before its clock started
(imports, data, model) is printed apart. Words/s is steps/s times the
batch times the words a row carries: one, or about 2.1 for ours with
packed words (the `transformer` preset). The second table gives, at the same
wall times, each side's last val loss by then, its best so far, its steps and
steps/s.

PyTorch is not a dependency of keras-makemore, only of this benchmark: `pip install torch`.
`OMP_NUM_THREADS` sets torch's threads (default: torch's own choice).

    python benchmarks/vs_makemore.py [--seconds 600] [--eval-every 500] [--peer-eval-every 500]
                                     [--ours-flags "--steps 25000"] [--peer-loader dataloader|tensor] [--json]
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

from _peers import ROOT, display, json_lines, load_warning, timed_run, train_with_probe

PEER_SCRIPT = Path(__file__).resolve().parent / "makemore_torch.py"


def ours_argv(run_dir: str, eval_every: int, flags: str) -> list[str]:
    return ["train", "--model", "transformer", "--eval-every", str(eval_every), *shlex.split(flags),
            "--out", run_dir, "--quiet", "--samples", "0"]


def peer_command(data: str, seconds: float, eval_every: int, loader: str) -> list[str]:
    return [sys.executable, str(PEER_SCRIPT.relative_to(ROOT)), data, "--seconds", f"{seconds:g}",
            "--eval-every", str(eval_every), "--loader", loader]


def _ours_in_process(argv: list[str], seconds: float) -> None:
    """Train `argv` here, printing a JSON line at the start of `fit`, at each validation and at the end."""
    process_start = time.perf_counter()
    from keras_makemore import cli

    cli._import_tensorflow_quietly()
    import keras

    def emit(**record):
        print(json.dumps(record), flush=True)

    class Curve(keras.callbacks.Callback):
        """Stamps each val loss with (seconds since `fit` began, optimizer steps); stops `fit` within `seconds`."""

        def on_train_begin(self, logs=None):
            self.start, self.eval_seconds = time.perf_counter(), 0.0
            self.chunk_end = self.start
            emit(event="start", parameters=self.model.count_params(), since_process_start=self.start - process_start)

        def on_train_batch_end(self, batch, logs=None):  # once per chunk of steps under engine.fit
            # Stop where one more chunk, as long as the last, would end past the budget: training never
            # overruns it (the peer's loop checks at every step), at the cost of up to a chunk left unused.
            now = time.perf_counter()
            last_chunk, self.chunk_end = now - self.chunk_end, now
            if now + last_chunk - self.start > seconds:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            # The epoch's end, from its last chunk to this callback (the last one): the validation pass and the
            # run's writes after it (best model, CSV row, checkpoint), which the peer's loop does not make.
            now = time.perf_counter()
            self.eval_seconds += now - self.chunk_end
            self.chunk_end = now
            emit(event="eval", seconds=time.perf_counter() - self.start, steps=int(self.model.optimizer.iterations),
                 val_loss=float(logs["val_loss"]), eval_seconds=self.eval_seconds)

        def on_train_end(self, logs=None):
            emit(event="end", seconds=time.perf_counter() - self.start, steps=int(self.model.optimizer.iterations),
                 eval_seconds=self.eval_seconds)

    train_with_probe(argv, Curve())


def split_hashes(data: str) -> dict:
    """sha256 of keras-makemore's train and val words, joined by newlines, as makemore_torch.py prints them."""
    from keras_makemore.data.corpus import Corpus

    split = Corpus.from_file(data, block_size=3, seed=42).split
    return {name: hashlib.sha256("\n".join(split[name]).encode("utf-8")).hexdigest() for name in ("train", "val")}


def words_per_row(config, data: str) -> float:
    """The training words a row of ours carries: 1, or about 2.1 with packed words (`pack_words`)."""
    from keras_makemore.models import get_model_type
    from keras_makemore.models.keras_model import training_examples
    from keras_makemore.training.recipe import corpus_for

    if not config.pack_words:
        return 1.0
    corpus = corpus_for(config, Path(data))
    return len(corpus.split["train"]) / len(training_examples(get_model_type(config.model), corpus, "train", True))


def _side(records: list[dict], wall: float, cpu: float, command: str) -> dict:
    start = next(r for r in records if r["event"] == "start")
    end = next((r for r in records if r["event"] == "end"), None)
    evals = [r for r in records if r["event"] == "eval"]
    if not evals or end is None:
        raise RuntimeError(f"{command}: no validation or no end recorded")
    return {"command": command, "parameters": start["parameters"], "setup_s": start["since_process_start"],
            "process_wall_s": wall, "process_cpu_s": cpu, "curve": evals, "steps": end["steps"],
            "train_s": end["seconds"], "eval_s": end["eval_seconds"],
            "steps_per_s": end["steps"] / end["seconds"],
            "steps_per_s_without_eval": end["steps"] / (end["seconds"] - end["eval_seconds"]),
            **{k: start[k] for k in ("batch_size", "torch", "threads", "loader") if k in start}}


def measure(args, data: str) -> dict:
    from keras_makemore.training.rundir import read_config

    load_before = os.getloadavg()
    peer_cmd = peer_command(data, args.peer_seconds or args.seconds, args.peer_eval_every, args.peer_loader)
    peer_run = timed_run(peer_cmd)
    peer_records = json_lines(peer_run["stdout"])
    ours_hashes, peer_start = split_hashes(data), peer_records[0]
    if (peer_start["train_words"], peer_start["val_words"]) != (ours_hashes["train"], ours_hashes["val"]):
        raise RuntimeError("makemore_torch.py's train or val words differ from keras-makemore's split")
    with tempfile.TemporaryDirectory(prefix="vs_makemore-") as tmp:
        argv = ours_argv(str(Path(tmp) / "run"), args.eval_every, args.ours_flags)
        ours_run = timed_run([sys.executable, __file__, "--seconds", f"{args.seconds:g}",
                              "--ours-run", json.dumps(argv)])
        ours_config = read_config(Path(tmp) / "run")[0]
    # `train` ends by evaluating its best checkpoint on the whole splits (`evaluation.evaluate_splits`): the
    # same metric as the curve's, which the table shows beside the curve's best as a check.
    final = re.search(r"train loss (\d+\.\d+)  val loss (\d+\.\d+)", ours_run["stdout"])
    sides = {
        "pytorch (makemore.py)": _side(peer_records, peer_run["wall_s"], peer_run["cpu_s"],
                                       display(peer_command("NAMES_TXT", args.peer_seconds or args.seconds, args.peer_eval_every,
                                                            args.peer_loader))),
        "keras-makemore": _side(json_lines(ours_run["stdout"]), ours_run["wall_s"], ours_run["cpu_s"],
                                display(["python", "-m", "keras_makemore",
                                         *ours_argv("DIR", args.eval_every, args.ours_flags)])),
    }
    sides["keras-makemore"]["batch_size"] = ours_config.batch_size
    sides["keras-makemore"]["words_per_row"] = words_per_row(ours_config, data)
    sides["keras-makemore"]["evaluate"] = {"train": float(final[1]), "val": float(final[2])}
    return {"seconds": args.seconds, "cores": os.cpu_count(), "sides": sides,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def at(curve: list[dict], t: float) -> dict | None:
    """The side's state at wall time `t`: its last validation by then, and its best val so far."""
    done = [r for r in curve if r["seconds"] <= t]
    if not done:
        return None
    return dict(done[-1], best=min(r["val_loss"] for r in done))


def print_tables(result: dict, points: int) -> None:
    load_warning(result["load_average_before"])
    seconds, sides = result["seconds"], result["sides"]
    print(f"## Transformer, val loss against wall time: {seconds:g} s budget each, one after the other, "
          f"{result['cores']} cores\n")
    print("| side | command | parameters | s before training | batch | steps | steps/s | steps/s without val | "
          "words/s | best val (at s) | last val (at s) | process wall s | process CPU s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in sides.items():
        best, last = min(s["curve"], key=lambda r: r["val_loss"]), s["curve"][-1]
        print(f"| {name} | `{s['command']}` | {s['parameters']:,} | {s['setup_s']:.1f} | {s['batch_size']} | "
              f"{s['steps']:,} | {s['steps_per_s']:.1f} | {s['steps_per_s_without_eval']:.1f} | "
              f"{s['steps_per_s'] * s['batch_size'] * s.get('words_per_row', 1.0):,.0f} | "
              f"{best['val_loss']:.4f} ({best['seconds']:.0f}) | {last['val_loss']:.4f} ({last['seconds']:.0f}) | "
              f"{s['process_wall_s']:.0f} | {s['process_cpu_s']:.0f} |")
    names = list(sides)
    print("\nAt the same wall times (the last validation by then; steps/s = its steps / its seconds):\n")
    print("| wall s | " + " | ".join(f"{n}: val | best | steps | steps/s" for n in names) + " |")
    print("| ---: | " + " | ".join("---: | ---: | ---: | ---:" for _ in names) + " |")
    ends = max(s["curve"][-1]["seconds"] for s in sides.values())  # the last val passes end after the budget
    for t in [seconds * i / points for i in range(1, points + 1)] + [ends]:
        cells = []
        for n in names:
            r = at(sides[n]["curve"], t)
            cells.append("- | - | - | -" if r is None else
                         f"{r['val_loss']:.4f} | {r['best']:.4f} | {r['steps']:,} | {r['steps'] / r['seconds']:.1f}")
        print(f"| {t:.0f}{' (end)' if t == ends else ''} | " + " | ".join(cells) + " |")
    ours = sides["keras-makemore"]
    print(f"\nkeras-makemore's best checkpoint, evaluated by `train` at its end (`evaluate_splits`): train "
          f"{ours['evaluate']['train']:.4f}, val {ours['evaluate']['val']:.4f} (the curve's best: "
          f"{min(r['val_loss'] for r in ours['curve']):.4f}). Its process wall time includes that evaluation.")
    torch_side = sides[names[0]]
    print(f"\ntorch {torch_side.get('torch')}, {torch_side.get('threads')} threads, loader {torch_side.get('loader')}. "
          f"Load average before/after: {', '.join(f'{x:.2f}' for x in result['load_average_before'])} / "
          f"{', '.join(f'{x:.2f}' for x in result['load_average_after'])}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="training wall time of each side (default 600)")
    parser.add_argument("--peer-seconds", type=float,
                        help="the peer's training wall time, if shorter (default: --seconds); its best val comes early")
    parser.add_argument("--eval-every", type=int, default=500, help="ours: steps between val passes (default 500)")
    parser.add_argument("--peer-eval-every", type=int, default=500,
                        help="PyTorch: steps between val passes (default 500, makemore.py's)")
    parser.add_argument("--ours-flags", default="", help='more flags for our train, e.g. "--steps 25000"')
    parser.add_argument("--peer-loader", choices=("dataloader", "tensor"), default="dataloader",
                        help="the PyTorch minibatches: makemore.py's DataLoader (default) or torch.randint on tensors")
    parser.add_argument("--points", type=int, default=10, help="rows of the side-by-side table (default 10)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--ours-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_run:
        return _ours_in_process(json.loads(args.ours_run), args.seconds)
    if args.seconds <= 0 or min(args.eval_every, args.peer_eval_every, args.points) < 1:
        parser.error("--seconds must be above 0, and --eval-every, --peer-eval-every and --points at least 1")
    from keras_makemore import cli

    cli._import_tensorflow_quietly()  # the split check imports it here: without its start-up chatter
    from keras_makemore.data.reading import load_names

    result = measure(args, str(load_names()))
    if args.json:
        print(json.dumps(result))
    else:
        print_tables(result, args.points)


if __name__ == "__main__":
    main()
