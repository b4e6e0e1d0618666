"""Steps/s of keras.io's models: plain `model.fit` against `engine.fit` with the same compile, XLA off and on.

For each model: plain `fit` and `engine.fit` without XLA; then with
`jit_compile=True`, plain `fit` against `engine.fit` with `xla="auto"` (the
engine's choice), `"loop"` (XLA compiles the whole loop over a chunk) and
`"step"` (XLA compiles each step, the loop is not compiled). Both trainers get
the same model, compile (`steps_per_execution` included) and `tf.data`
pipeline. Each figure is the fastest of --tries runs, each run in its own
process, the configurations taking turns so that load on a shared machine hits
them alike.

    python benchmarks/engine_models.py [--tries 2] [--seconds 3] [--models mnist_convnet,char_lstm,...] [--json]

The models (keras.io examples, batch 32):
    mnist_convnet: vision/mnist_convnet (two Conv2D, max pooling, dropout, accuracy), 28x28 images.
    conv1d_text: nlp/text_classification_from_scratch (two strided Conv1D), 5,000 words, sequences of 200.
    char_lstm: generative/lstm_character_level_text_generation (LSTM(128) on one-hot characters, 40 long).
    ticket: guides/functional_api's ticket model (three inputs, two outputs, loss weights).
    lecture_mlp: makemore part 2 (block 3, embed 10, hidden 200), loss only.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# name: steps_per_execution
MODELS = {"mnist_convnet": 8, "conv1d_text": 8, "char_lstm": 8, "ticket": 32, "lecture_mlp": 1000}
CONFIGS = ("plain-noxla", "engine-noxla", "plain-xla", "engine-auto", "engine-loop", "engine-step")


def _model_and_data(name: str, steps_per_execution: int, jit_compile: bool):
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 1024
    if name == "mnist_convnet":
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(10, activation="softmax"),
        ])
        compile_args = {"loss": "categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}
        data = (rng.random((n, 28, 28, 1), "float32"), keras.utils.to_categorical(rng.integers(0, 10, n), 10))
    elif name == "conv1d_text":
        inputs = keras.Input((200,), dtype="int64")
        h = keras.layers.Dropout(0.5)(keras.layers.Embedding(5000, 64)(inputs))
        h = keras.layers.Conv1D(64, 7, padding="valid", activation="relu", strides=3)(h)
        h = keras.layers.Conv1D(64, 7, padding="valid", activation="relu", strides=3)(h)
        h = keras.layers.Dropout(0.5)(keras.layers.Dense(64, activation="relu")(keras.layers.GlobalMaxPooling1D()(h)))
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
        compile_args = {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]}
        data = (rng.integers(0, 5000, (n, 200)), rng.integers(0, 2, (n, 1)).astype("float32"))
    elif name == "char_lstm":
        model = keras.Sequential([keras.Input((40, 60)), keras.layers.LSTM(128),
                                  keras.layers.Dense(60, activation="softmax")])
        compile_args = {"loss": "categorical_crossentropy", "optimizer": keras.optimizers.RMSprop(0.01)}
        data = (keras.utils.to_categorical(rng.integers(0, 60, (n, 40)), 60),
                keras.utils.to_categorical(rng.integers(0, 60, n), 60))
    elif name == "ticket":
        title, body = keras.Input((10,), name="title"), keras.Input((100,), name="body")
        tags = keras.Input((12,), name="tags")
        features = keras.layers.concatenate([keras.layers.LSTM(128)(keras.layers.Embedding(10000, 64)(title)),
                                             keras.layers.LSTM(32)(keras.layers.Embedding(10000, 64)(body)), tags])
        model = keras.Model({"title": title, "body": body, "tags": tags},
                            {"priority": keras.layers.Dense(1, name="priority")(features),
                             "department": keras.layers.Dense(4, name="department")(features)})
        compile_args = {"optimizer": keras.optimizers.RMSprop(1e-3),
                        "loss": {"priority": keras.losses.BinaryCrossentropy(from_logits=True),
                                 "department": keras.losses.CategoricalCrossentropy(from_logits=True)},
                        "loss_weights": {"priority": 1.0, "department": 0.2}}
        data = ({"title": rng.integers(0, 10000, (n, 10)), "body": rng.integers(0, 10000, (n, 100)),
                 "tags": rng.integers(0, 2, (n, 12)).astype("float32")},
                {"priority": rng.random((n, 1), "float32"),
                 "department": keras.utils.to_categorical(rng.integers(0, 4, n), 4)})
    elif name == "lecture_mlp":
        model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(27, 10),
                                  keras.layers.Flatten(), keras.layers.Dense(200, activation="tanh"),
                                  keras.layers.Dense(27)])
        compile_args = {"optimizer": keras.optimizers.SGD(0.1),
                        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        data = (rng.integers(0, 27, (n * 32, 3)).astype("int32"), rng.integers(0, 27, n * 32))
    else:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {name!r}")
    model.compile(**compile_args, steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    ds = tf.data.Dataset.from_tensor_slices(data).shuffle(n, seed=0).batch(32, drop_remainder=True).repeat()
    return model, ds


def _measure(name: str, config: str, seconds: float) -> float:
    """Steps/s of one configuration, after a warm-up fit that traces and compiles."""
    from keras_makemore import engine

    steps_per_execution = MODELS[name]
    trainer, xla = config.split("-")
    model, ds = _model_and_data(name, steps_per_execution, jit_compile=xla != "noxla")
    if trainer == "plain":
        fit = lambda **kwargs: model.fit(ds, verbose=0, **kwargs)  # noqa: E731
    else:
        scope = "auto" if xla == "noxla" else xla
        fit = lambda **kwargs: engine.fit(model, ds, verbose=0, xla=scope, **kwargs)  # noqa: E731
    fit(steps_per_epoch=steps_per_execution)  # trace and compile
    start = time.perf_counter()
    fit(steps_per_epoch=steps_per_execution)
    # Time about `seconds`: a window of a few chunks is at the mercy of a loaded machine's bursts.
    chunks = max(2, round(seconds / (time.perf_counter() - start)))
    start = time.perf_counter()
    fit(steps_per_epoch=chunks * steps_per_execution)
    return chunks * steps_per_execution / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=2, help="runs of each figure; the fastest is kept")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window of each run")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        print(json.dumps({"steps_per_s": _measure(*args.one, args.seconds)}))
        return

    names = args.models.split(",")
    best = {(m, c): 0.0 for m in names for c in CONFIGS}
    for _ in range(args.tries):
        for key in best:
            proc = subprocess.run([sys.executable, __file__, "--one", *key, "--seconds", str(args.seconds)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"# {key} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            best[key] = max(best[key], json.loads(proc.stdout.strip().splitlines()[-1])["steps_per_s"])
    if args.json:
        print(json.dumps({m: {c: round(best[m, c], 2) for c in CONFIGS} for m in names}))
        return
    print(f"## Steps/s, batch 32, best of {args.tries}, {os.cpu_count()} cores\n")
    print("| model | spe | plain, no XLA | engine, no XLA | ratio | plain, XLA | engine auto | ratio "
          "| engine loop | ratio | engine step | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in names:
        r = {c: best[m, c] for c in CONFIGS}

        def ratio(a, b):
            return f"{r[a] / r[b]:.2f}x" if r[b] else "n/a"

        print(f"| {m} | {MODELS[m]} | {r['plain-noxla']:,.1f} | {r['engine-noxla']:,.1f} | "
              f"{ratio('engine-noxla', 'plain-noxla')} | {r['plain-xla']:,.1f} | {r['engine-auto']:,.1f} | "
              f"{ratio('engine-auto', 'plain-xla')} | {r['engine-loop']:,.1f} | {ratio('engine-loop', 'plain-xla')} | "
              f"{r['engine-step']:,.1f} | {ratio('engine-step', 'plain-xla')} |")


if __name__ == "__main__":
    main()
