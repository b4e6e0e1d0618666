"""How keras-makemore's cost grows with the corpus: preparation, memory, training, evaluation.

Generates word lists of 32K, 320K, 3.2M and 32M lines (makemore's names, each
with one random letter inserted at a random place, drawn with a fixed seed)
into a temporary directory, then for each runs `keras-makemore train` in a
fresh process, timed with `/usr/bin/time`, and measures `Corpus.from_file`
and `evaluate_splits` in another:

    python benchmarks/scale.py                       # all sizes
    python benchmarks/scale.py --lines 2000000       # one size (the 2M-line list of docs/benchmarks.md)
    python benchmarks/scale.py --generate words.txt --lines 2000000   # only write the corpus
    python benchmarks/scale.py --prepare words.txt   # only time its preparation, best of 5

Each row prints the command it ran. The figures are in docs/benchmarks.md.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (32_000, 320_000, 3_200_000, 32_000_000)
ROOT = Path(__file__).resolve().parent.parent  # `python -m keras_makemore` runs this checkout's package
CHUNK_LINES = 1_000_000


def generate(path: Path, lines: int, seed: int = 0) -> None:
    """Write `lines` names, each with one random lowercase letter inserted, deterministically for `seed`."""
    import numpy as np

    from keras_makemore.data.reading import concat_ranges, load_names, pack_words, read_words

    chars, offsets = pack_words(read_words(load_names()))
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        for first in range(0, lines, CHUNK_LINES):
            count = min(CHUNK_LINES, lines - first)
            name = rng.integers(0, len(offsets) - 1, count)
            length = offsets[name + 1] - offsets[name]
            insert_at = (rng.random(count) * (length + 1)).astype(np.int64)
            letter = rng.integers(ord("a"), ord("z") + 1, count).astype(np.uint8)
            # Each line is its name with the letter at `insert_at`, then a newline.
            pos = concat_ranges(length + 2)
            line = np.repeat(np.arange(count), length + 2)
            source = offsets[name][line] + pos - (pos > insert_at[line])
            out = chars[np.minimum(source, len(chars) - 1)]
            out[pos == insert_at[line]] = letter[line[pos == insert_at[line]]]
            out[pos == length[line] + 1] = ord("\n")
            f.write(out.tobytes())


def run(command: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in GB and the output of `command`, timed by GNU time."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return wall, peak_kb / 1e6, done.stdout


PROBE = """
import sys, time
from keras_makemore.data.corpus import Corpus
from keras_makemore.analysis.evaluation import evaluate_splits
from keras_makemore.training.run import Run
started = time.perf_counter()
corpus = Corpus.from_file(sys.argv[1], 3)
prepared = time.perf_counter() - started
for s in ("train", "val", "test"):
    corpus.windows(s)
windows = time.perf_counter() - started - prepared
run = Run.load(sys.argv[2])
started = time.perf_counter()
losses = evaluate_splits(run.model, corpus)
evaluated = time.perf_counter() - started
print(f"{corpus.num_words} {int(corpus.offsets[-1])} {prepared:.3f} {windows:.3f} {evaluated:.3f} "
      f"{sum(l.examples for l in losses.values())} {corpus.split_rule}")
"""


def measure(path: Path, lines: int, steps: int, work: Path, env: dict) -> dict:
    run_dir = work / f"run-{lines}"
    train = [sys.executable, "-m", "keras_makemore", "train", "--data", str(path), "--steps", str(steps),
             "--quiet", "--samples", "0", "--out", str(run_dir)]
    wall, peak, out = run(train, env)
    history = __import__("json").loads((run_dir / "history.json").read_text())
    probe = [sys.executable, "-c", PROBE, str(path), str(run_dir)]
    _, probe_peak, probe_out = run(probe, env)
    words, chars, prepared, windows, evaluated, examples, rule = probe_out.split()
    return dict(lines=lines, mb=path.stat().st_size / 1e6, words=int(words), chars=int(chars), rule=rule,
                prepare_s=float(prepared), windows_s=float(windows), words_per_s=int(words) / float(prepared),
                eval_s=float(evaluated), eval_examples=int(examples), train_wall_s=wall, train_peak_gb=peak,
                train_s=history["train_seconds_last_session"], steps=steps,
                rss_budget_gb=1 + 32 * int(chars) / 1e9, command=" ".join(["keras-makemore", *train[3:]]))


def prepare(path: Path, repeats: int = 5) -> None:
    """Print the best time of `Corpus.from_file` and the three splits' windows over `repeats` runs."""
    from keras_makemore.data.corpus import Corpus
    from keras_makemore.data.split import SPLIT_NAMES

    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        corpus = Corpus.from_file(path, 3)
        for split in SPLIT_NAMES:
            corpus.windows(split)
        best = min(best, time.perf_counter() - started)
    print(f"{path}: {corpus.num_words:,} words, {corpus.split_rule} split: from_file + windows best of {repeats} "
          f"{best:.3f} s = {corpus.num_words / best / 1e6:.2f}M words/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, action="append", help="corpus size(s) in lines (default: all of SIZES)")
    parser.add_argument("--steps", type=int, default=20_000, help="training steps (default 20000)")
    parser.add_argument("--generate", metavar="FILE", help="only write the corpus of --lines lines to FILE")
    parser.add_argument("--prepare", metavar="FILE", help="only time preparing FILE in this process, best of 5")
    args = parser.parse_args()
    sizes = args.lines or SIZES
    if args.generate:
        generate(Path(args.generate), sizes[0])
        return
    if args.prepare:
        prepare(Path(args.prepare))
        return
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in sizes:
            path = Path(tmp) / f"words-{lines}.txt"
            started = time.perf_counter()
            generate(path, lines)
            print(f"generated {lines:,} lines ({path.stat().st_size / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            rows.append(measure(path, lines, args.steps, Path(tmp), env))
            path.unlink()
            r = rows[-1]
            print(f"| {r['lines']:,} | {r['mb']:.1f} | {r['rule']} | {r['prepare_s']:.2f} ({r['words_per_s'] / 1e6:.1f}M words/s) "
                  f"| {r['windows_s']:.2f} | {r['train_s']:.1f} ({r['steps'] / r['train_s']:,.0f} steps/s) "
                  f"| {r['eval_s']:.1f} ({r['eval_examples'] / r['eval_s'] / 1e6:.1f}M ex/s) "
                  f"| {r['train_wall_s']:.1f} | {r['train_peak_gb']:.2f} (budget {r['rss_budget_gb']:.2f}) "
                  f"| `{r['command']}` |", flush=True)


if __name__ == "__main__":
    main()
