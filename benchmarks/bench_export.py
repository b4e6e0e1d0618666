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

from keras_makemore.export import EXPORT_DIR, SAVED_MODEL_DIR, export_run  # noqa: E402
from keras_makemore.exported import ExportedModel  # noqa: E402
from keras_makemore.runs import Run  # noqa: E402
from keras_makemore.sampling import sample_words  # noqa: E402


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
    saved = tf.saved_model.load(str(run.path / EXPORT_DIR / SAVED_MODEL_DIR))
    next_token = saved.signatures["next_token"]
    rows.append(("SavedModel next_token, batch 1", best_seconds(lambda: next_token(context=tf.constant(context)), 2000), None))

    interpreter = Interpreter(model_path=str(tflite))
    runner = interpreter.get_signature_runner("next_token")
    rows.append(("LiteRT SignatureRunner, batch 1", best_seconds(lambda: runner(context=context), 2000, 30), None))
    exported = ExportedModel(tflite)
    rows.append(("LiteRT ExportedModel.next_token, batch 1",
                 best_seconds(lambda: exported.next_token(context), 2000, 30), None))
    seed = iter(range(10**9))
    for label, model, n, calls in (("Keras sample_words (numpy loop), 1,000 words", run.model, 1000, 3),
                                   ("LiteRT sample_words (numpy loop), 1,000 words", exported, 1000, 3)):
        words = sample_words(model, run.vocab, run.config.block_size, n, seed=0, max_length=run.max_length)
        tokens = sum(len(w) + 1 for w in words)
        s = best_seconds(lambda: sample_words(model, run.vocab, run.config.block_size, n, seed=0,
                                              max_length=run.max_length), calls)
        rows.append((label, s / tokens, n / s))
    saved_generate = saved.signatures["generate"]
    litert_generate = interpreter.get_signature_runner("generate")
    for label, n, calls in (("SavedModel generate, 1 word", 1, 50), ("SavedModel generate, 10,000 words", 10_000, 3)):
        out = saved_generate(seed=tf.constant(1), num_words=tf.constant(n), temperature=tf.constant(1.0))
        tokens = int(np.sum(np.cumprod(out["tokens"].numpy() != 0, axis=1))) + n
        s = best_seconds(lambda: saved_generate(seed=tf.constant(next(seed)), num_words=tf.constant(n),
                                                temperature=tf.constant(1.0)), calls)
        rows.append((label, s / tokens, n / s))
    for label, n, calls in (("LiteRT generate, 1 word", 1, 500), ("LiteRT generate, 1,000 words", 1000, 10),
                            ("LiteRT generate, 10,000 words", 10_000, 5)):
        out = litert_generate(seed=np.int32(1), num_words=np.int32(n), temperature=np.float32(1.0))
        tokens = int(np.sum(np.cumprod(out["tokens"] != 0, axis=1))) + n
        s = best_seconds(lambda: litert_generate(seed=np.int32(next(seed)), num_words=np.int32(n),
                                                 temperature=np.float32(1.0)), calls)
        rows.append((label, s / tokens, n / s))

    reference = rows[4][1]
    print(f"{'what':<48} {'us/token':>10} {'words/s':>12} {'time/token vs SignatureRunner':>30}")
    for what, per_token, words_per_s in rows:
        wps = f"{words_per_s:,.0f}" if words_per_s else "-"
        print(f"{what:<48} {per_token * 1e6:>10.2f} {wps:>12} {per_token / reference:>30.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
