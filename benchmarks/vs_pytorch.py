"""The lecture's whole process, keras-makemore against the lecture's PyTorch loop.

Both sides train the makemore part-2 MLP (block 3, embed 10, hidden 200) with
the lecture's recipe: 200,000 steps of minibatch 32, lr 0.1 then 0.01 from
half-way, on the lecture's 80/10/10 split of the packaged names.txt, then
evaluate train and val. Each run is a fresh process, timed from the outside:
wall seconds, and CPU seconds (user + system) from `getrusage(RUSAGE_CHILDREN)`.

- ours: `python -m keras_makemore train --batch-size 32 --steps N --lr 0.1
  --lr-drop N/2:0.01 --out DIR --quiet --samples 0` (validating every 10,000
  steps and saving the run, as `train` does);
- the peer: `python benchmarks/lecture_torch.py NAMES_TXT --steps N`, the
  lecture's loop with torch's default threads (it saves nothing).

After one untimed run of each (100 steps: the libraries read into the page
cache, the peer's split checked against ours), the two run one after the other
in `--pairs` pairs, the order swapped every pair, never at the same time; the table gives the median of each and their
ratio, the val loss of each, and where the time of one more run of ours goes
(import, data, model, training, validation, saving, final evaluation),
measured in-process by timers wrapped around `train`'s own functions.

PyTorch is not a dependency of keras-makemore, only of this benchmark: `pip install torch`.

    python benchmarks/vs_pytorch.py [--pairs 3] [--steps 200000] [--json]
"""

import argparse
import collections
import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _peers import ROOT, display, json_lines, load_warning, timed_run, train_with_probe

PEER_SCRIPT = Path(__file__).resolve().parent / "lecture_torch.py"


def ours_command(steps: int, run_dir: str) -> list[str]:
    return [sys.executable, "-m", "keras_makemore", "train", "--batch-size", "32", "--steps", str(steps),
            "--lr", "0.1", "--lr-drop", f"{steps // 2}:0.01", "--out", run_dir, "--quiet", "--samples", "0"]


def peer_command(steps: int, data: str) -> list[str]:
    return [sys.executable, str(PEER_SCRIPT.relative_to(ROOT)), data, "--steps", str(steps)]


def val_loss_of(stdout: str) -> float:
    """The `val loss X` both sides print at the end."""
    match = re.search(r"val loss (\d+\.\d+)", stdout)
    if not match:
        raise RuntimeError(f"no 'val loss' in the output:\n{stdout[-2000:]}")
    return float(match[1])


# The breakdown: one run of `train`, in this process, with a timer around each stage's function.

STAGES = ("import", "data", "model build + compile", "training", "validation during training",
          "saving (checkpoints, CSV, history, reload)", "final evaluation (train, val)", "sampling", "other")


class _Timers:
    """Exclusive seconds per stage: time inside a nested timed call counts for the inner stage only."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self._open = []  # seconds of inner timed calls, one entry per timed call in progress

    def wrap(self, stage: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            self._open.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._open.pop()
                self.seconds[stage] += elapsed - inner
                if self._open:
                    self._open[-1] += elapsed
        return timed

    def patch(self, stage: str, owner, name: str) -> None:
        setattr(owner, name, self.wrap(stage, getattr(owner, name)))


def breakdown(argv: list[str]) -> dict:
    """Run `keras_makemore.cli.main(argv)` here, timing its stages; the start and chunk times of its `fit`."""
    start = time.perf_counter()
    from keras_makemore import cli

    cli._import_tensorflow_quietly()
    import keras

    from keras_makemore import engine
    from keras_makemore.analysis import evaluation
    from keras_makemore.sampling import words
    from keras_makemore.training import callbacks, recipe, run, rundir

    timers = _Timers()
    timers.seconds["import"] = time.perf_counter() - start
    chunk_ends = []

    class ChunkTimes(keras.callbacks.Callback):
        """`engine.fit` calls the batch hooks once per chunk of steps."""

        def on_train_begin(self, logs=None):
            chunk_ends.append(time.perf_counter())

        def on_train_batch_end(self, batch, logs=None):
            chunk_ends.append(time.perf_counter())

    timers.patch("data", recipe, "corpus_for")
    timers.patch("data", recipe, "training_examples")
    timers.patch("model build + compile", recipe, "compiled_model")
    timers.patch("training", engine, "fit")
    timed_fit = engine.fit

    def fit(*args, **kwargs):
        chunk_ends[:] = [time.perf_counter()]
        return timed_fit(*args, **kwargs)

    engine.fit = fit
    timers.patch("validation during training", callbacks.ValLoss, "on_epoch_end")
    for owner in (callbacks.BestModelCheckpoint, callbacks.AtomicCSVLogger, callbacks.AtomicBackupAndRestore):
        timers.patch("saving (checkpoints, CSV, history, reload)", owner, "on_epoch_end")
    timers.patch("saving (checkpoints, CSV, history, reload)", rundir, "write_history")
    timers.patch("saving (checkpoints, CSV, history, reload)", run, "load_model")
    timers.patch("saving (checkpoints, CSV, history, reload)", recipe, "load_model")
    timers.patch("final evaluation (train, val)", evaluation, "evaluate_splits")
    timers.patch("sampling", words, "sample_words")
    train_with_probe(argv, ChunkTimes())
    total = time.perf_counter() - start
    timers.seconds["other"] = total - sum(timers.seconds.values())
    chunks = [b - a for a, b in zip(chunk_ends[1:], chunk_ends[2:])]
    return {"seconds": {s: timers.seconds[s] for s in STAGES}, "total_s": total,
            "fit_setup_s": chunk_ends[1] - chunk_ends[0],
            "first_chunk_s": chunks[0] if chunks else None,
            "median_chunk_s": statistics.median(chunks[1:]) if len(chunks) > 1 else None, "chunks": len(chunks)}


def _breakdown_run(steps: int, run_dir: str) -> dict:
    """`breakdown` in a fresh process (the argv of `ours_command`), timed from outside too."""
    argv = ours_command(steps, run_dir)[3:]
    cmd = [sys.executable, __file__, "--breakdown-of", json.dumps(argv)]
    result = timed_run(cmd)
    inside = json_lines(result["stdout"])[-1]
    inside["process_wall_s"], inside["process_cpu_s"] = result["wall_s"], result["cpu_s"]
    inside["val_loss"] = val_loss_of(result["stdout"])
    return inside


def check_same_split(peer_stdout: str, data: str) -> None:
    """The peer's train and val example counts are those of keras-makemore's split (block 3)."""
    from keras_makemore.data.corpus import Corpus
    from keras_makemore.data.reading import read_words

    corpus = Corpus(read_words(data), block_size=3, seed=42)
    peer = json_lines(peer_stdout)[-1]
    ours = {"train_examples": len(corpus.windows("train")), "val_examples": len(corpus.windows("val"))}
    if any(peer[k] != v for k, v in ours.items()):
        raise RuntimeError(f"the PyTorch script's split differs from keras-makemore's: {peer} against {ours}")


def measure(pairs: int, steps: int, data: str) -> dict:
    load_before = os.getloadavg()
    runs = {"keras-makemore": [], "pytorch": []}
    with tempfile.TemporaryDirectory(prefix="vs_pytorch-") as tmp:
        # Untimed, so that neither side's first timed run pays for reading its libraries from disk.
        timed_run(ours_command(100, str(Path(tmp) / "warm-up")))
        warm_up = timed_run(peer_command(100, data))
        check_same_split(warm_up["stdout"], data)
        peer = {k: json_lines(warm_up["stdout"])[-1][k] for k in ("torch", "threads")}
        for pair in range(pairs):
            order = ["keras-makemore", "pytorch"] if pair % 2 == 0 else ["pytorch", "keras-makemore"]
            for side in order:
                cmd = (ours_command(steps, str(Path(tmp) / f"run{pair}")) if side == "keras-makemore"
                       else peer_command(steps, data))
                result = timed_run(cmd)
                result["val_loss"] = val_loss_of(result.pop("stdout"))
                runs[side].append(result)
                print(f"# pair {pair + 1}: {side} {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                      f"val {result['val_loss']:.4f}", file=sys.stderr)
        parts = _breakdown_run(steps, str(Path(tmp) / "breakdown"))
    rows = {}
    for side, results in runs.items():
        rows[side] = {
            "command": display(ours_command(steps, "DIR") if side == "keras-makemore"
                               else peer_command(steps, "NAMES_TXT")),
            "median_wall_s": statistics.median(r["wall_s"] for r in results),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in results),
            "runs": results,
        }
    return {"steps": steps, "pairs": pairs, "cores": os.cpu_count(), "rows": rows,
            "wall_ratio": rows["pytorch"]["median_wall_s"] / rows["keras-makemore"]["median_wall_s"],
            "cpu_ratio": rows["pytorch"]["median_cpu_s"] / rows["keras-makemore"]["median_cpu_s"],
            "breakdown": parts, "peer": peer, "load_average_before": load_before, "load_average_after": os.getloadavg()}


def print_tables(result: dict) -> None:
    load_warning(result["load_average_before"])
    print(f"## The lecture's whole process, {result['steps']:,} steps: median of {result['pairs']} alternating "
          f"pairs, {result['cores']} cores\n")
    print("| side | command | wall s | CPU s | val loss (each run) |")
    print("| --- | --- | ---: | ---: | --- |")
    for side, row in result["rows"].items():
        vals = ", ".join(f"{r['val_loss']:.4f}" for r in row["runs"])
        print(f"| {side} | `{row['command']}` | {row['median_wall_s']:.1f} | {row['median_cpu_s']:.1f} | {vals} |")
    print(f"\nPyTorch's median over ours: wall {result['wall_ratio']:.2f}x, CPU {result['cpu_ratio']:.2f}x "
          f"(above 1: keras-makemore takes less); torch {result['peer']['torch']}, "
          f"{result['peer']['threads']} threads. "
          f"Load average before/after: "
          f"{', '.join(f'{x:.2f}' for x in result['load_average_before'])} / "
          f"{', '.join(f'{x:.2f}' for x in result['load_average_after'])}.\n")
    parts = result["breakdown"]
    print(f"### Where one run of ours spends its time (val {parts['val_loss']:.4f})\n")
    print("| stage | seconds | share |")
    print("| --- | ---: | ---: |")
    for stage, seconds in parts["seconds"].items():
        print(f"| {stage} | {seconds:.2f} | {seconds / parts['total_s']:.0%} |")
    print(f"| **in-process total** | **{parts['total_s']:.2f}** | 100% |")
    print(f"\nThe process took {parts['process_wall_s']:.2f} s wall ({parts['process_cpu_s']:.1f} s CPU): "
          f"{parts['process_wall_s'] - parts['total_s']:.2f} s more for the interpreter's start and exit. "
          f"Training: {parts['fit_setup_s']:.2f} s in `fit` before its first step (the pipeline, the callbacks' "
          f"start), then {parts['chunks']} chunks: the first (tracing, XLA compilation and its steps) took "
          f"{parts['first_chunk_s']:.2f} s, the median of the others {parts['median_chunk_s']:.3f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="runs of each side, taking turns (default 3)")
    parser.add_argument("--steps", type=int, default=200_000, help="training steps of each run (default 200000)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--breakdown-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.breakdown_of:
        print(json.dumps(breakdown(json.loads(args.breakdown_of))))
        return
    if args.pairs < 1 or args.steps < 2:
        parser.error("--pairs must be at least 1 and --steps at least 2")
    from keras_makemore import cli

    cli._import_tensorflow_quietly()  # the split check imports it here: without its start-up chatter
    from keras_makemore.data.reading import load_names

    result = measure(args.pairs, args.steps, str(load_names()))
    if args.json:
        print(json.dumps(result))
    else:
        print_tables(result)


if __name__ == "__main__":
    main()
