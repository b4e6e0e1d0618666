"""The `best` preset's attention (the Transformer at batch 64), forward and backward under XLA: the package's
layer against other ways of writing the same products, side by side.

`CausalSelfAttention` computes each head's scores and mixes as batched matrix
products of `[16, 16]` blocks, `batch x heads` of them (256 at batch 64). XLA
runs those on this CPU as one small product after another, and the backward
pass's products with a transposed operand cost about 2.7 us each (a profile of
the preset's step: docs/benchmarks.md). Each row below is `--layers` attention
layers of the preset's sizes with their `qkv` projection, forward and
backward, compiled with XLA: milliseconds per call, the best of `--rounds`
rounds of `--calls` calls, the rows taking turns. `qkv only` has no attention
at all: what the projections cost alone. `grad difference` is the largest
difference of the first projection's gradient from the layer's, relative to
the gradient's largest entry (float32 rounding: the same function, summed in
another order).

- `layer`: the package's `CausalSelfAttention` (`ops.matmul` of `[batch, heads, 16, 16]` blocks);
- `broadcast`: the products as broadcast multiplies and sums (one fused loop each, no small products);
- `einsum`: `tf.einsum` on `[batch, length, heads, size]`, no transposes;
- `block-diagonal`: every head at once, as products with keys and values spread to a block-diagonal
  `[heads x length, width]` (4x the multiply-adds, a quarter of the products).

    python benchmarks/attention.py [--rounds 5] [--calls 100] [--layers 4] [--json]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def formulations(heads: int, length: int, width: int) -> dict:
    """The attention core `(q, k, v) [batch, length, width] -> [batch, length, width]`, written each way."""
    import numpy as np
    import tensorflow as tf

    from keras_makemore.models.layers import MASKED

    size = width // heads
    causal = tf.constant(np.triu(np.full((length, length), MASKED, "float32"), k=1))
    spread = tf.constant(np.kron(np.eye(heads), np.ones((1, size))).astype("float32"))  # [heads, width]

    def split_heads(t):  # [batch, length, width] -> [batch, length, heads, size]
        return tf.reshape(t, (-1, length, heads, size))

    def broadcast(q, k, v):
        q, k, v = (tf.transpose(split_heads(t), (0, 2, 1, 3)) for t in (q, k, v))  # [batch, heads, length, size]
        scores = tf.reduce_sum(q[:, :, :, None, :] * k[:, :, None, :, :], -1) / size**0.5
        mixed = tf.reduce_sum(tf.nn.softmax(scores + causal, -1)[..., None] * v[:, :, None, :, :], -2)
        return tf.reshape(tf.transpose(mixed, (0, 2, 1, 3)), (-1, length, width))

    def einsum(q, k, v):
        q, k, v = (split_heads(t) for t in (q, k, v))
        scores = tf.einsum("bihs,bjhs->bhij", q, k) / size**0.5
        return tf.reshape(tf.einsum("bhij,bjhs->bihs", tf.nn.softmax(scores + causal, -1), v), (-1, length, width))

    def block_diagonal(q, k, v):
        k, v = (tf.reshape(t[:, None, :, :] * spread[None, :, None, :], (-1, heads * length, width)) for t in (k, v))
        scores = tf.reshape(tf.matmul(q, k, transpose_b=True) / size**0.5, (-1, length, heads, length))
        weights = tf.reshape(tf.nn.softmax(scores + causal[:, None, :], -1), (-1, length, heads * length))
        return tf.matmul(weights, v)

    return {"broadcast": broadcast, "einsum": einsum, "block-diagonal": block_diagonal}


def measure(rounds: int, calls: int, layers: int) -> list[dict]:
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_makemore.models.layers import CausalSelfAttention
    from keras_makemore.training.config import TrainConfig

    tf.get_logger().setLevel("ERROR")  # one tf.function per row: TensorFlow's retracing warning is expected
    preset = TrainConfig.from_preset("best")
    batch, length, width, heads = preset.batch_size, 16, preset.embed_dim, preset.heads
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, length, width)).astype("float32"))
    attention = [CausalSelfAttention(heads, keras.initializers.GlorotUniform(seed=i)) for i in range(layers)]
    for layer in attention:
        layer.build(x.shape)
    kernels = [layer.qkv.kernel for layer in attention]

    def through(core):  # `layers` residual attention layers, `core` between each one's qkv and proj
        def forward(h, layer):
            if core is None:
                return layer(h)
            q, k, v = tf.split(layer.qkv(h), 3, axis=-1)
            return layer.proj(core(q, k, v))

        @tf.function(jit_compile=True)
        def step():
            with tf.GradientTape() as tape:
                h = x
                for layer in attention:
                    h = h + forward(h, layer)
                loss = tf.reduce_sum(h * h)
            return tape.gradient(loss, kernels)[0]

        return step

    steps = {"layer": through(None), **{name: through(core) for name, core in
                                        formulations(heads, length, width).items()},
             "qkv only": through(lambda q, k, v: v)}
    grads = {name: step().numpy() for name, step in steps.items()}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                step()
            step().numpy()
            best[name] = min(best[name], (time.perf_counter() - start) / (calls + 1) * 1e3)
    scale = np.max(np.abs(grads["layer"]))
    return [{"attention": name, "ms": best[name], "ratio": best["layer"] / best[name],
             "grad_difference": None if name == "qkv only" else  # another function: nothing to compare
             float(np.max(np.abs(grads[name] - grads["layer"])) / scale)} for name in steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure(args.rounds, args.calls, args.layers)
    if args.json:
        print(json.dumps({"rows": rows}))
        return
    print(f"{args.layers} attention layers of the transformer preset, forward and backward under XLA, "
          f"{os.cpu_count()} cores\n")
    print("| attention | ms per call | speed vs layer | grad difference |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        difference = "-" if row["grad_difference"] is None else f"{row['grad_difference']:.1g}"
        print(f"| {row['attention']} | {row['ms']:.2f} | {row['ratio']:.2f}x | {difference} |")


if __name__ == "__main__":
    main()
