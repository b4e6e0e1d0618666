"""Where the learning-rate finder lands on names.txt with the lecture MLP, and what that rate trains to.

    .venv/bin/python benchmarks/lr_find_names.py                    # sweeps only, about a minute
    .venv/bin/python benchmarks/lr_find_names.py --train 0.05 0.1   # also train 200k steps at these rates

The network is the lecture's (block 3, embed 10, hidden 200, batch 32, SGD).
Each row is one weight/minibatch seed; the default sweep (1e-7..10, 100 steps,
smoothing 1 - 50/steps) is printed beside fastai's fixed smoothing 0.98, whose
moving average lags half a 100-step sweep behind the rate.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_makemore.data.reading import load_names
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import find_lr_for_config, train

NAMES = str(load_names())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=NAMES)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train", type=float, nargs="*", default=[], metavar="LR",
                        help="train the lecture schedule (200k steps) at these rates and print val loss")
    args = parser.parse_args()

    variants = {"default": {}, "smoothing 0.98": {"smoothing": 0.98}, "1000 steps": {"num_steps": 1000}}
    print(f"{'seed':>4} {'sweep':<15} {'valley':>8} {'steepest':>9} {'minimum':>8} {'steps':>6} {'stop':<16} {'secs':>5}")
    for seed in range(args.seeds):
        for name, kwargs in variants.items():
            started = time.perf_counter()
            result = find_lr_for_config(TrainConfig(data=args.data, seed=seed), **kwargs)
            s = result.suggestions
            print(f"{seed:>4} {name:<15} {s['valley'].learning_rate:>8.3g} {s['steepest'].learning_rate:>9.3g} "
                  f"{s['minimum'].learning_rate:>8.3g} {len(result.losses):>6} {result.stop_reason:<16} "
                  f"{time.perf_counter() - started:>5.1f}", flush=True)

    for lr in args.train:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            run = train(TrainConfig(data=args.data, lr=lr), os.path.join(tmp, "run"), verbose=0, num_samples=0)
            print(f"lr {lr:<8g} best val loss {min(run.history['val_loss']):.4f}  "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
