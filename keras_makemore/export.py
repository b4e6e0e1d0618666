"""Export a trained model for devices: a SavedModel and a LiteRT `.tflite` file.

Both artifacts carry the same four signatures:

- `next_token(context)`: int32 `[batch, block_size]` -> `logits` and
  `probabilities`, float32 `[batch, vocab]`.
- `generate(seed, num_words, temperature)`: int32, int32, float32 scalars ->
  `tokens`, int32 `[num_words, max_length]`: whole words sampled inside the
  graph, each row a word's token ids followed by markers (0). `num_words`
  must be at least 1 and `temperature` above 0.
- `generate_with_uniforms(uniforms, temperature)`: float32
  `[num_words, max_length]` uniforms in (0, 1) you draw yourself -> `tokens`.
- `decode(tokens)`: int32 `[batch, length]` -> `code_points`, int32 `[batch,
  length]`, the Unicode code point of each token (0 for the marker);
  `vocabulary`, int32 `[vocab]`, the code point of every token id (entry 0,
  the marker, is 0); `block_size` and `max_length`, int32 scalars. The
  vocabulary travels inside the artifact: the file alone is enough to sample.
  (A signature without inputs would be simpler, but the int8 calibrator
  rejects one.)

The SavedModel is written with `keras.export.ExportArchive`, the LiteRT file by
TensorFlow's converter from that SavedModel, optionally quantized.
"""

import dataclasses
import json
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import _atomic
from keras_makemore.data import MARKER_ID, Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.exported import ExportedModel
from keras_makemore.generation import generate_tokens, given_uniforms_fn, seeded_uniforms_fn
from keras_makemore.model import model_shape

EXPORT_DIR = "export"
SAVED_MODEL_DIR = "saved_model"
MANIFEST_FILE = "export.json"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SIGNATURES = ("next_token", "generate", "generate_with_uniforms", "decode")
_REPRESENTATIVE_BATCHES = 100


def litert_filename(quantize: str = "none") -> str:
    """`model.tflite`, or `model_<quantize>.tflite` for a quantized model."""
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def write_saved_model(model: keras.Model, vocab: Vocabulary, path: str | os.PathLike, max_length: int) -> Path:
    """Write `model` as a SavedModel with the signatures `next_token`, `generate`, `generate_with_uniforms`, `decode`.

    Args:
        model: maps int32 contexts `[batch, block_size]` to logits.
        vocab: the model's vocabulary; it is stored in the SavedModel.
        path: the SavedModel directory to write (replaced atomically if it exists).
        max_length: the number of characters `generate` draws per word.

    Returns:
        `path`.

    Example:

    ```python
    write_saved_model(run.model, run.vocab, "export/saved_model", max_length=32)
    convert_to_litert("export/saved_model", "export/model.tflite")
    ```
    """
    shape = model_shape(model)
    block_size, vocab_size = shape["block_size"], shape["vocab_size"]
    if vocab_size != vocab.size:
        raise UserError(f"the model has {vocab_size} tokens but the vocabulary {vocab.size}: pass the run's own vocabulary")
    if max_length < 1:
        raise UserError(f"max length must be at least 1, got {max_length}")

    logits_fn = _serving_logits(model)

    def next_token(context):
        logits = logits_fn(context)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    def generate(seed, num_words, temperature):
        tokens = generate_tokens(logits_fn, seeded_uniforms_fn(seed, num_words), num_words, max_length,
                                 temperature, block_size, vocab_size)
        return {"tokens": tokens}

    def generate_with_uniforms(uniforms, temperature):
        shape = tf.shape(uniforms)
        tokens = generate_tokens(logits_fn, given_uniforms_fn(uniforms), shape[0], shape[1],
                                 temperature, block_size, vocab_size)
        return {"tokens": tokens}

    code_points = np.array([MARKER_ID] + [ord(c) for c in vocab.chars], dtype=np.int32)

    def decode(tokens):
        table = tf.constant(code_points)
        return {"code_points": tf.gather(table, tokens), "vocabulary": table,
                "block_size": tf.constant(block_size, tf.int32), "max_length": tf.constant(max_length, tf.int32)}

    scalar = lambda dtype, name: tf.TensorSpec([], dtype, name=name)  # noqa: E731
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("next_token", next_token, [tf.TensorSpec([None, block_size], tf.int32, name="context")])
    archive.add_endpoint("generate", generate, [scalar(tf.int32, "seed"), scalar(tf.int32, "num_words"),
                                                scalar(tf.float32, "temperature")])
    archive.add_endpoint("generate_with_uniforms", generate_with_uniforms,
                         [tf.TensorSpec([None, None], tf.float32, name="uniforms"), scalar(tf.float32, "temperature")])
    archive.add_endpoint("decode", decode, [tf.TensorSpec([None, None], tf.int32, name="tokens")])
    path = Path(path)
    with _atomic.atomic_dir(path) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return path


def _serving_logits(model: keras.Model):
    """`model`'s forward pass as the fewest graph ops: a plain gather and a fixed-width reshape.

    Keras' `Embedding` wraps negative ids and its `Flatten` reads the batch
    size at run time; in LiteRT those six extra ops cost a one-context call
    more than its two dense layers do. Token ids are never negative, so the
    logits are the same.
    """
    table = model.get_layer("embedding").embeddings
    flattened = model.get_layer("concat").output
    after_flatten = keras.Model(flattened, model.output)

    def logits_fn(context):
        return after_flatten(tf.reshape(tf.gather(table, context), [-1, flattened.shape[-1]]), training=False)

    return logits_fn


def convert_to_litert(
    saved_model: str | os.PathLike,
    path: str | os.PathLike,
    quantize: str = "none",
    representative_contexts: np.ndarray | None = None,
) -> Path:
    """Convert a SavedModel from `write_saved_model` into a LiteRT `.tflite` file.

    Args:
        saved_model: the SavedModel directory.
        path: the `.tflite` file to write (atomically).
        quantize: `"none"` (float32), `"float16"` (float16 weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (int8
            weights and activations, calibrated on `representative_contexts`;
            ops without int8 kernels stay float).
        representative_contexts: int32 `[n, block_size]` training contexts; `"int8"` needs them.

    Returns:
        `path`.
    """
    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=list(SIGNATURES))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if representative_contexts is None or not len(representative_contexts):
            raise UserError("int8 quantization needs representative contexts to calibrate on: pass training contexts")
        converter.representative_dataset = lambda: _representative_samples(representative_contexts)
    with warnings.catch_warnings():  # int8 calibration runs TF's own, deprecated, tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        flatbuffer = converter.convert()
    path = Path(path)
    with _atomic.atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return path


def _representative_samples(contexts: np.ndarray):
    """Calibration inputs for every signature: training contexts, and words generated at a few temperatures."""
    rng = np.random.default_rng(0)
    for _ in range(_REPRESENTATIVE_BATCHES):
        batch = contexts[rng.integers(0, len(contexts), 32)].astype(np.int32)
        yield "next_token", {"context": batch}
    for seed, temperature in enumerate((0.5, 1.0, 1.5)):
        yield "generate", {"seed": np.int32(seed), "num_words": np.int32(32), "temperature": np.float32(temperature)}
        uniforms = rng.random((32, 16)).astype(np.float32)
        yield "generate_with_uniforms", {"uniforms": uniforms, "temperature": np.float32(temperature)}
        yield "decode", {"tokens": contexts[rng.integers(0, len(contexts), 32)].astype(np.int32)}


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """How an exported model compares with the Keras model on the same contexts.

    `max_abs_diff` is the largest absolute difference of any next-token
    probability; the losses are mean negative log-likelihoods in nats.
    """

    examples: int
    max_abs_diff: float
    keras_loss: float
    exported_loss: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def check_against_keras(
    model: keras.Model, exported: ExportedModel, x: np.ndarray, y: np.ndarray, batch_size: int = 4096
) -> ExportCheck:
    """Run both models on every context of `x`; compare probabilities and the loss on targets `y`."""
    max_diff, keras_total, exported_total = 0.0, 0.0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        keras_logits = np.asarray(model(xb, training=False))
        out = exported.next_token(xb)
        keras_probs = np.asarray(tf.nn.softmax(keras_logits))
        max_diff = max(max_diff, float(np.abs(out["probabilities"] - keras_probs).max()))
        keras_total += _total_nll(keras_logits, yb)
        exported_total += _total_nll(out["logits"], yb)
    n = max(1, len(x))
    return ExportCheck(len(x), max_diff, keras_total / n, exported_total / n)


def _total_nll(logits: np.ndarray, y: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].sum())


@dataclasses.dataclass
class ExportReport:
    """What `export_run` wrote, and how the LiteRT file compares with Keras on the val split."""

    export_dir: Path
    saved_model: Path
    litert: Path
    quantize: str
    check: ExportCheck | None

    @property
    def litert_bytes(self) -> int:
        return self.litert.stat().st_size

    def to_json(self) -> dict:
        return {"export_dir": str(self.export_dir), "saved_model": str(self.saved_model),
                "litert": str(self.litert), "litert_bytes": self.litert_bytes, "quantize": self.quantize,
                "val_check": self.check.to_json() if self.check else None}


def export_run(run_dir: str | os.PathLike, quantize: str = "none", check: bool = True) -> ExportReport:
    """Export a trained run into `run_dir/export/`: SavedModel, `.tflite` file and `export.json`.

    Args:
        run_dir: a directory written by `keras-makemore train`.
        quantize: one of `QUANTIZATIONS`; see `convert_to_litert`.
        check: compare the LiteRT model with Keras on every val context (needs
            the run's data file; skipped when it is gone, except for int8,
            which calibrates on the training contexts and fails without them).

    Returns:
        An `ExportReport`; the same facts are merged into `export/export.json`.
    """
    from keras_makemore.runs import Run

    if quantize not in QUANTIZATIONS:
        raise UserError(f"unknown quantization {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
    run = Run.load(run_dir)
    corpus = None
    if check or quantize == "int8":
        try:
            corpus = run.corpus()
        except UserError:
            if quantize == "int8":
                raise
    export_dir = run.path / EXPORT_DIR
    saved_model = write_saved_model(run.model, run.vocab, export_dir / SAVED_MODEL_DIR, run.max_length)
    representative = corpus.examples("train")[0] if quantize == "int8" else None
    litert = convert_to_litert(saved_model, export_dir / litert_filename(quantize), quantize, representative)
    result = None
    if check and corpus is not None:
        result = check_against_keras(run.model, ExportedModel(litert), *corpus.examples("val"))
    report = ExportReport(export_dir, saved_model, litert, quantize, result)
    _update_manifest(export_dir, run, report)
    return report


def _update_manifest(export_dir: Path, run, report: ExportReport) -> None:
    path = export_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        manifest = {}
    litert = manifest.get("litert", {}) if isinstance(manifest.get("litert"), dict) else {}
    litert[report.litert.name] = {"quantize": report.quantize, "bytes": report.litert_bytes,
                                  "val_check": report.check.to_json() if report.check else None}
    manifest.update({
        "saved_model": SAVED_MODEL_DIR, "signatures": list(SIGNATURES),
        "vocab_size": run.vocab.size, "block_size": run.config.block_size, "max_length": run.max_length,
        "litert": litert,
    })
    _atomic.write_json(path, manifest)
