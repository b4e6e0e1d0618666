"""Every model of the zoo on names.txt: size, train/val/test NLL, wall time, `.tflite` size and words/s.

Trains each model with its own preset (the one `train --model NAME` uses) on
the lecture's split, exports it, and samples from the `.tflite` file. Prints a
Markdown table with the command of each row, and the published anchors below.

    python benchmarks/zoo.py [--models transformer gru] [--steps N] [--json]

`--steps` shortens every run (the learning-rate schedule follows it), for a quick look.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_makemore.analysis.evaluation import evaluate_splits
from keras_makemore.artifacts.reader import ExportedModel
from keras_makemore.artifacts.writer import export_run
from keras_makemore.models import MODEL_NAMES  # noqa: E402
from keras_makemore.sampling.words import sample_words
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import preset_name
from keras_makemore.training.recipe import train

# Published figures on names.txt (val on the lecture's split unless said otherwise).
ANCHORS = [
    ("makemore.py Transformer, 204,571 parameters (test, on makemore.py's own split)", "~1.92"),
    ("lecture part 5: WaveNet, context 8, 76,579 parameters", "1.993"),
    ("lecture part 5: flat MLP, context 8", "2.027"),
    ("lecture part 2: MLP, block 3, embed 10, hidden 200", "2.1701"),
]
SAMPLED_WORDS = 5_000


def measure(name: str, steps: int | None, out: Path) -> dict:
    overrides = {"model": name} | ({"steps": steps, "eval_every": max(1, steps // 4)} if steps else {})
    preset = preset_name(None, name)
    config = TrainConfig.from_preset(preset, **overrides)
    started = time.perf_counter()
    result = train(config, out / name, verbose=0, num_samples=0)
    seconds = time.perf_counter() - started
    losses = evaluate_splits(result.model, result.corpus)
    report = export_run(out / name, check=False)
    exported = ExportedModel(report.litert)
    sample_words(exported, exported.vocab, exported.block_size, 100, seed=1)  # warm up
    sampled = time.perf_counter()
    sample_words(exported, exported.vocab, exported.block_size, SAMPLED_WORDS, seed=0)
    words_per_s = SAMPLED_WORDS / (time.perf_counter() - sampled)
    command = f"keras-makemore train --model {name}" + (f" --steps {steps}" if steps else "")
    return {"model": name, "preset": preset, "parameters": result.model.count_params(), "steps": config.steps,
            **{split: loss.nll for split, loss in losses.items()}, "seconds": seconds,
            "tflite_bytes": report.litert_bytes, "words_per_s": words_per_s, "command": command,
            "val_curve": [[(i + 1) * config.steps // len(result.history["val_loss"]), v]
                          for i, v in enumerate(result.history["val_loss"])]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=None, help="train every model this many steps (default: its preset's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model instead of the table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name in args.models:
            rows.append(measure(name, args.steps, Path(tmp)))
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        return
    print(f"{os.cpu_count()} CPUs; load average after the last run: {os.getloadavg()[0]:.1f}\n")
    print("| model | parameters | steps | train | val | test | wall time | .tflite | words/s (.tflite) | command |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['parameters']:,} | {r['steps']:,} | {r['train']:.4f} | {r['val']:.4f} | "
              f"{r['test']:.4f} | {r['seconds']:.0f} s | {r['tflite_bytes'] / 1024:.0f} KiB | {r['words_per_s']:,.0f} | "
              f"`{r['command']}` |")
    for what, val in ANCHORS:
        print(f"| {what} | | | | {val} | | | | | published |")


if __name__ == "__main__":
    main()
