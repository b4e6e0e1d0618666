"""Per-token latency and words/s of Keras, a tf.function, the SavedModel and LiteRT.

    python benchmarks/bench_export.py RUN_DIR

Exports RUN_DIR first if RUN_DIR/export/model.tflite is missing. Each figure is
the best of 3 repeats (30 for the LiteRT one-context calls, whose few
microseconds other processes on the machine easily blur). "per token" is one next-token distribution for one
context (batch 1) from Python; for `generate` it is the invoke's time divided
by the characters it sampled (end markers included).
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_makemore.artifacts.reader import ExportedModel
from keras_makemore.artifacts.writer import EXPORT_DIR, SAVED_MODEL_DIR, export_run
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.sampling.words import sample_words
from keras_makemore.training.run import Run


def best_seconds(fn, calls: int, repeats: int = 3) -> float:
    """Seconds per call of `fn`, the best of `repeats` runs of `calls` calls."""
    fn()  # warm up: tracing, allocation, delegate
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def _per_token_and_words_per_s(call, num_words: int, calls: int) -> tuple[float, float]:
    """Seconds per sampled character (end markers included) and words per second of `call()`."""
    tokens = np.asarray(call())
    characters = int(np.sum(np.cumprod(tokens != 0, axis=1))) + num_words
    s = best_seconds(call, calls)
    return s / characters, num_words / s


def main(run_dir: str) -> None:
    run = Run.load(run_dir)
    tflite = run.path / EXPORT_DIR / "model.tflite"
    if not tflite.exists():
        export_run(run.path, check=False)
    context = np.array([[0, 5, 13]], dtype=np.int32)
    rows = []  # (what, seconds per token, words per second or None)

    rows.append(("Keras model.predict, batch 1", best_seconds(lambda: run.model.predict(context, verbose=0), 50), None))
    rows.append(("Keras model(x) eager, batch 1", best_seconds(lambda: run.model(context, training=False), 500), None))
    fn = tf.function(lambda x: tf.nn.softmax(run.model(x, training=False)))
    rows.append(("tf.function, batch 1", best_seconds(lambda: fn(context), 2000), None))
    saved = tf.saved_model.load(str(run.path / EXPORT_DIR / SAVED_MODEL_DIR))  # written by export_run above
    next_token = saved.signatures["next_token"]
    rows.append(("SavedModel next_token, batch 1", best_seconds(lambda: next_token(context=tf.constant(context)), 2000), None))

    interpreter = Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner("next_token")
    rows.append(("LiteRT SignatureRunner, batch 1", best_seconds(lambda: runner(context=context), 2000, 30), None))
    exported = ExportedModel(tflite)
    rows.append(("LiteRT ExportedModel.next_token, batch 1",
                 best_seconds(lambda: exported.next_token(context), 2000, 30), None))
    seed = iter(range(10**9))
    words = sample_words(run.model, run.vocab, run.config.block_size, 1000, seed=0, max_length=run.max_length)
    s = best_seconds(lambda: sample_words(run.model, run.vocab, run.config.block_size, 1000, seed=next(seed),
                                          max_length=run.max_length), 3)
    rows.append(("Keras sample_words (TF graph), 1,000 words", s / sum(len(w) + 1 for w in words), 1000 / s))
    controls = SamplingControls().inputs(run.vocab, run.max_length)
    top_p = SamplingControls(top_p=0.9).inputs(run.vocab, run.max_length)
    saved_generate = saved.signatures["generate"]
    for label, n, calls in (("SavedModel generate, 1 word", 1, 50), ("SavedModel generate, 10,000 words", 10_000, 3)):
        def call(n=n):
            return saved_generate(seed=tf.constant(next(seed)), num_words=tf.constant(n), first_row=tf.constant(0),
                                  **{k: tf.constant(v) for k, v in controls.items()})["tokens"].numpy()
        rows.append((label, *_per_token_and_words_per_s(call, n, calls)))
    litert_generate = interpreter.get_signature_runner("generate")
    for label, n, calls, inputs in (("LiteRT generate, 1 word", 1, 500, controls),
                                    ("LiteRT generate, 1,000 words", 1000, 10, controls),
                                    ("LiteRT generate, 10,000 words", 10_000, 5, controls),
                                    ("LiteRT generate, 10,000 words, top-p 0.9", 10_000, 5, top_p)):
        def call(n=n, inputs=inputs):
            return litert_generate(seed=np.int32(next(seed)), num_words=np.int32(n), first_row=np.int32(0),
                                   **inputs)["tokens"]
        rows.append((label, *_per_token_and_words_per_s(call, n, calls)))
    litert_fixed = interpreter.get_signature_runner("generate_fixed")
    rows.append(("LiteRT generate_fixed, 100 words",
                 *_per_token_and_words_per_s(lambda: litert_fixed(seed=np.int32(next(seed)), first_row=np.int32(0),
                                                                  **controls)["tokens"], 100, 50)))

    reference = rows[4][1]
    print(f"{'what':<48} {'us/token':>10} {'words/s':>12} {'time/token vs SignatureRunner':>30}")
    for what, per_token, words_per_s in rows:
        wps = f"{words_per_s:,.0f}" if words_per_s else "-"
        print(f"{what:<48} {per_token * 1e6:>10.2f} {wps:>12} {per_token / reference:>30.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
