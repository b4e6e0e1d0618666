"""Quality of each preset on names.txt, next to the makemore lectures' published losses.

Trains every preset on the lecture's split (seed 42) and prints train/val/test
loss, parameter count and training time in a table, with the lectures' figures
below it for comparison.

    python benchmarks/quality.py [--presets lecture best] [--data FILE]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_makemore.analysis.evaluation import evaluate_splits
from keras_makemore.data.reading import load_names
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import PRESETS
from keras_makemore.training.recipe import train

DEFAULT_DATA = load_names()

# The makemore lectures' published val losses on the same split.
LECTURES = [
    ("part 2: MLP, block 3, embed 10, hidden 200 (train 2.1260)", 2.1701),
    ("part 3: the same MLP with batchnorm and fixed init", 2.1027),
    ("part 5: flat MLP, context 8", 2.027),
    ("part 5: WaveNet, context 8", 1.9937),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--direct-connections", action="store_true",
                        help="also train each preset with Bengio's direct connections")
    args = parser.parse_args()

    rows = []
    variants = [(p, False) for p in args.presets] + ([(p, True) for p in args.presets] if args.direct_connections else [])
    with tempfile.TemporaryDirectory() as tmp:
        for preset, direct in variants:
            config = TrainConfig.from_preset(preset, data=args.data, direct_connections=direct)
            start = time.perf_counter()
            result = train(config, Path(tmp) / f"{preset}-{direct}", verbose=0)
            seconds = time.perf_counter() - start
            losses = evaluate_splits(result.model, result.corpus)
            rows.append((f"{preset}{' + direct connections' if direct else ''}", result.model.count_params(),
                         losses, seconds))
            print(f"# {rows[-1][0]}: val {losses['val'].nll:.4f} in {seconds:.0f} s", flush=True)

    print(f"\n| {'model':<52} | {'params':>8} | {'train':>6} | {'val':>6} | {'test':>6} | {'train time':>10} |")
    print(f"| {'-' * 52} | {'-' * 8}: | {'-' * 6}: | {'-' * 6}: | {'-' * 6}: | {'-' * 10}: |")
    for name, params, losses, seconds in rows:
        print(f"| keras-makemore --preset {name:<28} | {params:>8,} | {losses['train'].nll:>6.4f} | "
              f"{losses['val'].nll:>6.4f} | {losses['test'].nll:>6.4f} | {seconds:>9.0f}s |")
    for name, val in LECTURES:
        print(f"| lecture {name:<44} | {'':>8} | {'':>6} | {val:>6.4f} | {'':>6} | {'':>10} |")


if __name__ == "__main__":
    main()
