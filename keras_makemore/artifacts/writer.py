"""Export a trained model for devices: a SavedModel and a LiteRT `.tflite` file.

Both artifacts carry the signatures of `keras_makemore.artifacts.signatures`.
The SavedModel is written with `keras.export.ExportArchive`, the LiteRT file by
TensorFlow's converter from that SavedModel, optionally quantized; `export_run`
writes both into a run directory, checked against the Keras model.
"""

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import atomic
from keras_makemore.artifacts.reader import MANIFEST_FILE, ExportedModel, saved_model_digests
from keras_makemore.artifacts.signatures import FIXED_BATCH, SIGNATURE_TABLE, SIGNATURES, Calibration, serving_of
from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.models.keras_model import model_shape, next_token_logits
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.training import rundir

EXPORT_DIR = "export"
SAVED_MODEL_DIR = "saved_model"
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
_REPRESENTATIVE_BATCHES = 100


def litert_filename(quantize: str = "none") -> str:
    """`model.tflite`, or `model_<quantize>.tflite` for a quantized model."""
    return "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"


def write_saved_model(model: keras.Model, vocab: Vocabulary, path: str | os.PathLike, max_length: int,
                      carry_state: bool = True) -> Path:
    """Write `model` as a SavedModel with the signatures of `SIGNATURE_TABLE`.

    Args:
        model: a model of the zoo (`keras_makemore.models`), or any model
            mapping int32 contexts `[batch, block_size]` to logits.
        vocab: the model's vocabulary; it is stored in the SavedModel.
        path: the SavedModel directory to write (replaced atomically if it exists).
        max_length: `L`, the most characters per word that `generate` draws and `score` takes.
        carry_state: a word model's `generate` carries its state from one
            character to the next (`models.base.decoder`); False reruns the
            whole sequence at each character, the same words, slower (for benchmarks).

    Returns:
        `path`.

    Example:

    ```python
    write_saved_model(run.model, run.vocab, "export/saved_model", max_length=32)
    convert_to_litert("export/saved_model", "export/model.tflite")
    ```
    """
    vocab_size = model_shape(model)["vocab_size"]
    if vocab_size != vocab.size:
        raise UserError(f"the model has {vocab_size} tokens but the vocabulary {vocab.size}: pass the run's own vocabulary",
                        argument="vocab")
    if max_length < 1:
        raise UserError(f"max_length must be at least 1, got {max_length}", argument="max_length")

    artifact = serving_of(model, vocab, max_length, carry_state)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature in SIGNATURE_TABLE:
        archive.add_endpoint(signature.name, signature.function(artifact), signature.input_specs(artifact))
    path = Path(path)
    with atomic.atomic_dir(path) as tmp:
        archive.write_out(str(tmp), verbose=False)
    return path


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
        samples = list(_representative_samples(saved_model, representative_contexts))
        converter.representative_dataset = lambda: iter(samples)
    with warnings.catch_warnings():  # int8 calibration runs TF's own, deprecated, tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        flatbuffer = converter.convert()
    path = Path(path)
    with atomic.atomic_path(path) as tmp:
        tmp.write_bytes(flatbuffer)
    return path


def _representative_samples(saved_model: str | os.PathLike, contexts: np.ndarray) -> Iterator[tuple[str, dict]]:
    """Calibration inputs for every signature: training contexts, and words the model samples with a few controls."""
    signatures = tf.saved_model.load(str(saved_model)).signatures  # written by `write_saved_model` just before
    meta = signatures["decode"](tokens=tf.zeros([1, 1], tf.int32))
    vocab = Vocabulary(chr(c) for c in meta["vocabulary"].numpy()[MARKER_ID + 1:])
    max_length = int(meta["max_length"])
    rng = np.random.default_rng(0)
    batches = [contexts[rng.integers(0, len(contexts), 32)].astype(np.int32) for _ in range(_REPRESENTATIVE_BATCHES)]
    controls = [SamplingControls(**options).inputs(vocab, max_length)
                for options in ({"temperature": 0.5}, {}, {"temperature": 1.5, "top_k": 5, "top_p": 0.9})]
    words = [signatures["generate_fixed"](seed=tf.constant(seed), first_row=tf.constant(0),
                                          **{k: tf.constant(v) for k, v in inputs.items()})["tokens"].numpy()
             for seed, inputs in enumerate(controls)]
    state = signatures["initial_state"](num_words=tf.constant(32))["state"].numpy()
    steps = []
    for position in range(min(block_size_of(signatures), max_length)):
        token = words[0][:32, position - 1] if position else np.zeros(32, np.int32)
        steps.append({"token": token.astype(np.int32), "position": np.int32(position), "state": state})
        state = signatures["decode_step"](**{k: tf.constant(v) for k, v in steps[-1].items()})["state"].numpy()
    calibration = Calibration(batches, controls, words, steps)
    for signature in SIGNATURE_TABLE:
        for inputs in signature.calibration(calibration):
            yield signature.name, inputs


def block_size_of(signatures) -> int:
    return int(signatures["decode"](tokens=tf.zeros([1, 1], tf.int32))["block_size"])


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
    logits_fn = next_token_logits(model)
    max_diff, keras_total, exported_total = 0.0, 0.0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        keras_logits = np.asarray(logits_fn(xb))
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

    Everything is written into a staging folder first and moved into place
    only once all of it is written, so a failure (a full disk) leaves the
    earlier export as it was. A run that another process trains or exports
    is refused at once (a `UserError` saying it is busy).

    Args:
        run_dir: a directory written by `keras-makemore train`.
        quantize: one of `QUANTIZATIONS`; see `convert_to_litert`.
        check: compare the LiteRT model with Keras on every val context (needs
            the run's data file; skipped when it is gone, except for int8,
            which calibrates on the training contexts and fails without them).

    Returns:
        An `ExportReport`; the same facts are merged into `export/export.json`,
        with the sha256 of every SavedModel file, which `ExportedModel` checks
        before it opens the SavedModel.
    """
    from keras_makemore.training.run import Run

    if quantize not in QUANTIZATIONS:
        raise UserError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}", argument="quantize")
    # Taken before the run is read: a run being trained changes under a reader, and is refused at once. A finished
    # run (its history.json written) is only ever held by another export, which ends soon: that one is waited for.
    with rundir.run_lock(Path(run_dir), wait=(Path(run_dir) / rundir.HISTORY_JSON).exists()):
        return _export_locked(Run.load(run_dir), quantize, check)


def _export_locked(run, quantize: str, check: bool) -> ExportReport:
    """`export_run` of the loaded `run`, whose directory this process has locked."""
    corpus = None
    if check or quantize == "int8":
        try:
            corpus = run.corpus()
        except UserError:
            if quantize == "int8":
                raise
    export_dir = run.path / EXPORT_DIR
    if export_dir.exists() and not export_dir.is_dir():
        raise UserError(f"run_dir: {export_dir} is a file, where the export folder goes: move it away, "
                        "then export again", argument="run_dir")
    name = litert_filename(quantize)
    try:
        with _staging(export_dir) as staging:
            saved_model = write_saved_model(run.model, run.vocab, staging / SAVED_MODEL_DIR, run.max_length)
            representative = _examples(corpus, "train")[0] if quantize == "int8" else None
            litert = convert_to_litert(saved_model, staging / name, quantize, representative)
            result = None
            if check and corpus is not None:
                result = check_against_keras(run.model, ExportedModel(litert), *_examples(corpus, "val"))
            manifest = _manifest(export_dir, run, name, quantize, litert.stat().st_size, result,
                                 saved_model_digests(saved_model))
            atomic.write_json(staging / MANIFEST_FILE, manifest)
            _move_dir(saved_model, export_dir / SAVED_MODEL_DIR, staging / "replaced")
            os.replace(litert, export_dir / name)
            os.replace(staging / MANIFEST_FILE, export_dir / MANIFEST_FILE)
    except (OSError, tf.errors.OpError) as e:
        disk = atomic.disk_error(e)
        if disk is None:
            raise
        problem, fix = ((f"the device of {export_dir} is read-only", "copy the run to a writable disk")
                        if disk[0] == errno.EROFS else (f"no space left on the device of {export_dir}", "free some space"))
        raise UserError(f"{problem} while exporting: {fix}, then export again (the earlier export, if any, is intact)"
                        ) from None
    return ExportReport(export_dir, export_dir / SAVED_MODEL_DIR, export_dir / name, quantize, result)


STREAMED_CHECK_BYTES = 64 << 20  # the contexts a streamed corpus gives the val check and int8's calibration


def _examples(corpus, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`(contexts, next ids)` of `split`: all of them, or of a streamed corpus a sample spread over the split
    of at most `STREAMED_CHECK_BYTES` (the file is read a chunk at a time)."""
    from keras_makemore.data.streaming import StreamedCorpus

    if not isinstance(corpus, StreamedCorpus):
        return corpus.examples(split)
    cap = max(1, STREAMED_CHECK_BYTES // (4 * (corpus.block_size + 1)))
    parts = list(corpus.windows(split).batches(4096, max_examples=cap).as_numpy_iterator())
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


@contextlib.contextmanager
def _staging(export_dir: Path) -> Iterator[Path]:
    """A fresh hidden folder inside `export_dir` (same file system, so moves out of it are renames); removed after.

    Call it holding the run's lock: staging folders left by a killed export are removed first.
    """
    created = not export_dir.exists()
    export_dir.mkdir(parents=True, exist_ok=True)
    for stale in export_dir.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=export_dir, prefix=".staging-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(export_dir.iterdir()):
            export_dir.rmdir()


def _move_dir(source: Path, dest: Path, aside: Path) -> None:
    """Put directory `source` at `dest`, moving an existing `dest` to `aside` first (renames only)."""
    if dest.exists():
        os.replace(dest, aside)
    os.replace(source, dest)


def _manifest(export_dir: Path, run, litert_name: str, quantize: str, litert_bytes: int,
              check: ExportCheck | None, digests: dict[str, str]) -> dict:
    """`export.json`: the earlier one's LiteRT entries, updated with this export."""
    try:
        manifest = json.loads((export_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    litert = manifest.get("litert") if isinstance(manifest.get("litert"), dict) else {}
    litert[litert_name] = {"quantize": quantize, "bytes": litert_bytes,
                           "val_check": check.to_json() if check else None}
    manifest.update({
        "saved_model": SAVED_MODEL_DIR, "saved_model_sha256": digests, "signatures": list(SIGNATURES),
        "vocab_size": run.vocab.size, "block_size": run.config.block_size, "max_length": run.max_length,
        "fixed_batch": FIXED_BATCH, "litert": litert,
    })
    return manifest
