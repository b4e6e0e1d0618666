"""Training steps/s with TensorFlow's default intra-op threads against one thread, per preset.

The evidence behind `keras_makemore.training.threads.ONE_THREAD_BELOW`: for TrainConfig's defaults (the lecture's
recipe, batch 32) and each preset, the step size the rule reads (multiply-adds of one forward pass of a
minibatch), steps/s through `engine.fit` on the run's own minibatches with TensorFlow's default threads
(one per core) and with one, their ratio, and what `threads=None` chooses. Each figure is the best of --tries
fresh processes (the two settings take turns), each timing --seconds of steps after a warm-up chunk.

    python benchmarks/threads.py [--tries 3] [--seconds 4] [--configs defaults lecture ...] [--json]
"""

import argparse
import json
import os
import subprocess
import sys
import time

CONFIGS = ("defaults", "lecture", "quick", "mlp-best", "bigram", "wavenet", "bow", "rnn", "gru", "transformer")


def _config(name: str):
    from keras_makemore.training.config import TrainConfig

    return TrainConfig() if name == "defaults" else TrainConfig.from_preset(name)


def measure(name: str, threads: int, seconds: float) -> dict:
    """Steps/s of `name`'s training with `threads` intra-op threads (0: TensorFlow's default), in this process."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    from keras_makemore import engine
    from keras_makemore.data.reading import load_names
    from keras_makemore.models import get_model_type
    from keras_makemore.models.keras_model import training_examples
    from keras_makemore.training.config import plan_steps
    from keras_makemore.training.recipe import compiled_model, corpus_for
    from keras_makemore.training.threads import auto_intra_op_threads, step_size

    config = _config(name)
    corpus = corpus_for(config, load_names())
    examples = training_examples(get_model_type(config.model), corpus, "train")
    plan = plan_steps(config, len(examples))
    model = compiled_model(config, corpus.vocab.size, corpus.block_size, plan, tf.distribute.get_strategy())
    chunk = plan.steps_per_execution
    minibatches = examples.random_minibatches(config.batch_size, config.seed, 10**8)

    def fit(steps: int) -> float:
        start = time.perf_counter()
        engine.fit(model, minibatches, xla=get_model_type(config.model).xla_scope, steps_per_epoch=steps, epochs=1, verbose=0)
        return time.perf_counter() - start

    fit(chunk)  # compile
    steps = chunk
    while (elapsed := fit(steps)) < seconds / 4:  # size the timed run to about `seconds`
        steps *= 2
    steps = max(chunk, round(steps * seconds / elapsed / chunk) * chunk)
    return {"config": name, "threads": threads, "steps_per_s": steps / fit(steps),
            "step_size": step_size(config, corpus.vocab.size, corpus.block_size),
            "auto": auto_intra_op_threads(config, corpus.vocab.size, corpus.block_size)}


def _in_subprocess(name: str, threads: int, seconds: float) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, __file__, "--one", name, str(threads), str(seconds)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=3, help="processes per config and setting (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed training per process (default 4)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=CONFIGS, metavar="NAME",
                        help=f"what to measure (default all: {' '.join(CONFIGS)})")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), float(args.one[2]))))
        return
    rows = []
    for name in args.configs:
        best = {}
        for attempt in range(args.tries):
            for threads in ((0, 1) if attempt % 2 == 0 else (1, 0)):
                result = _in_subprocess(name, threads, args.seconds)
                if result["steps_per_s"] > best.get(threads, {}).get("steps_per_s", 0):
                    best[threads] = result
        rows.append({"config": name, "step_size": best[0]["step_size"], "default_steps_per_s": best[0]["steps_per_s"],
                     "one_thread_steps_per_s": best[1]["steps_per_s"], "auto": best[0]["auto"]})
        if not args.json:
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "rows": rows}))
        return
    print(f"\nsteps/s through engine.fit, best of {args.tries}, {os.cpu_count()} cores\n")
    print("| config | step size (multiply-adds) | default threads | one thread | one / default | auto takes |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        ratio = r["one_thread_steps_per_s"] / r["default_steps_per_s"]
        print(f"| {r['config']} | {r['step_size']:,} | {r['default_steps_per_s']:,.1f} | "
              f"{r['one_thread_steps_per_s']:,.1f} | {ratio:.2f}x | {'one thread' if r['auto'] else 'default'} |")


if __name__ == "__main__":
    main()
