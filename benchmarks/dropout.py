"""The `best` preset's training step (the Transformer at batch 64) with Keras' `Dropout` against one drawing
Threefry masks, side by side.

Keras' dropout draws its masks with TensorFlow's default algorithm, Philox,
which XLA draws slowly on CPU. `ThreefryDropout` below is Keras' `Dropout`
drawing with Threefry under XLA instead, from the same `SeedGenerator`
state. It is faster, and it is not in the package: with it, the preset's
val ended higher at each seed tried (docs/benchmarks.md). Two figures:

- the masks alone: the preset's nine dropout masks of a step (`[64, 16, 64]`
  each, rate 0.15) drawn in one XLA-compiled function, milliseconds per step,
  with Philox (what Keras' dropout draws with) and with Threefry;
- the whole step: steps/s of the `best` preset through `engine.fit` on
  its own minibatches, its network built with each dropout layer, the two
  taking turns in one process for `--rounds` rounds of `--steps` steps, best
  round counted (speed drifts from minute to minute on a shared machine).

    python benchmarks/dropout.py [--rounds 5] [--steps 400] [--json]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def threefry_dropout():
    """A `keras.layers.Dropout` subclass that draws Threefry masks where XLA compiles it (TensorFlow's own
    kernels have no Threefry: there it is Keras' layer)."""
    import keras
    import tensorflow as tf

    class ThreefryDropout(keras.layers.Dropout):
        def call(self, inputs, training=False):
            if not (training and self.rate > 0 and self.noise_shape is None
                    and tf.__internal__.get_enclosing_xla_context() is not None):
                return super().call(inputs, training=training)
            # The int32 seed Keras' TensorFlow backend folds from the int64 state.
            seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), "int32")
            return tf.nn.experimental.stateless_dropout(inputs, self.rate, seed, rng_alg="threefry")

    return ThreefryDropout


def masks_ms(algorithm: str, count: int, shape: list[int], rate: float, tries: int = 5, calls: int = 200) -> float:
    """Milliseconds for `count` masks of `shape` at `rate`, drawn with `algorithm` under XLA; best of `tries`."""
    import tensorflow as tf

    x = tf.ones(shape)

    @tf.function(jit_compile=True)
    def draw(x, seed):
        for k in range(count):
            x = tf.nn.experimental.stateless_dropout(x, rate, seed=seed + k, rng_alg=algorithm)
        return x

    seed = tf.constant([1, 2])
    draw(x, seed).numpy()
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        for i in range(calls):
            out = draw(x, seed + i)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def step_speeds(rounds: int, steps: int) -> dict[str, float]:
    """Best steps/s of the preset with each dropout layer, taking turns."""
    import keras
    import tensorflow as tf

    from keras_makemore import engine
    from keras_makemore.data.reading import load_names
    from keras_makemore.models import get_model_type
    from keras_makemore.models.keras_model import training_examples
    from keras_makemore.training.config import TrainConfig, plan_steps
    from keras_makemore.training.recipe import compiled_model, corpus_for

    config = TrainConfig.from_preset("best")
    corpus = corpus_for(config, load_names())
    examples = training_examples(get_model_type(config.model), corpus, "train")
    plan = plan_steps(config, len(examples))
    runs = {}
    for name, layer in (("keras Dropout (Philox)", keras.layers.Dropout), ("ThreefryDropout", threefry_dropout())):
        keras_dropout = keras.layers.Dropout
        keras.layers.Dropout = layer  # what `build_transformer` builds its dropout with
        try:
            model = compiled_model(config, corpus.vocab.size, corpus.block_size, plan, tf.distribute.get_strategy())
        finally:
            keras.layers.Dropout = keras_dropout
        minibatches = examples.random_minibatches(config.batch_size, config.seed, 10**8)
        chunk = plan.steps_per_execution
        runs[name] = (model, minibatches, max(chunk, steps // chunk * chunk))
        engine.fit(model, minibatches, xla=get_model_type(config.model).xla_scope, steps_per_epoch=chunk, epochs=1, verbose=0)
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, (model, minibatches, n) in runs.items():
            start = time.perf_counter()
            engine.fit(model, minibatches, xla=get_model_type(config.model).xla_scope, steps_per_epoch=n, epochs=1, verbose=0)
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="turns each network takes (default 5)")
    parser.add_argument("--steps", type=int, default=400, help="steps of each turn (default 400)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    from keras_makemore.training.config import TrainConfig

    preset = TrainConfig.from_preset("best")
    # A step's masks: one per residual branch of each block, one on the embeddings; 16 positions on names.
    shape = [preset.batch_size, 16, preset.embed_dim]
    count = 2 * preset.layers + 1
    masks = {algorithm: masks_ms(algorithm, count, shape, preset.dropout) for algorithm in ("philox", "threefry")}
    speeds = step_speeds(args.rounds, args.steps)
    if args.json:
        print(json.dumps({"masks_ms": masks, "steps_per_s": speeds}))
        return 0
    print(f"the preset's {count} masks of a step under XLA: philox {masks['philox']:.2f} ms, "
          f"threefry {masks['threefry']:.2f} ms ({masks['philox'] / masks['threefry']:.1f}x)")
    philox, threefry = speeds["keras Dropout (Philox)"], speeds["ThreefryDropout"]
    print("| dropout layer | preset steps/s | ratio |\n| --- | ---: | ---: |")
    print(f"| keras Dropout (Philox) | {philox:.1f} | 1.00x |")
    print(f"| ThreefryDropout | {threefry:.1f} | {threefry / philox:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
