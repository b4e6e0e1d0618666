"""Keras callbacks usable in any `model.fit` pipeline."""

import io
import math
import os
import re
from pathlib import Path

import keras

from keras_makemore import atomic
from keras_makemore.analysis.evaluation import SplitNLL
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.sampling.words import printable, sample_words
from keras_makemore.training.rundir import read_csv_rows


class SampleWords(keras.callbacks.Callback):
    """Print a few sampled words at the end of each epoch, as makemore does.

    Args:
        vocab: the model's vocabulary.
        block_size: the model's context length.
        num_samples: words to print each time.
        every: print every this many epochs.
        seed: seed of the samples; each epoch uses `seed + epoch`.
        print_fn: where the line goes (default `print`).

    Example:

    ```python
    model.fit(ds, epochs=5, callbacks=[SampleWords(vocab, block_size=3)])
    ```
    """

    def __init__(self, vocab: Vocabulary, block_size: int, num_samples: int = 5,
                 every: int = 1, seed: int = 0, print_fn=print):
        super().__init__()
        self.vocab = vocab
        self.block_size = block_size
        self.num_samples = num_samples
        self.every = every
        self.seed = seed
        self.print_fn = print_fn

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        words = sample_words(self.model, self.vocab, self.block_size, self.num_samples, seed=self.seed + epoch)
        self.print_fn("samples: " + " ".join(map(printable, words)))


class ValLoss(keras.callbacks.Callback):
    """Add `val_loss`, the model's mean NLL on the corpus' val split, to each epoch's logs.

    It does what `validation_data` does in `model.fit`, with the numbers
    `evaluate` prints: exact over the whole split (float64 sums), its
    batches cut once. List it before the callbacks that read `val_loss`.
    Keras' `on_test_begin` and `on_test_end` are not called for it.

    Args:
        model: the network being trained.
        corpus: the corpus whose `"val"` split to read.
        max_examples: if set, only this many examples, spread evenly over the split.

    Example:

    ```python
    engine.fit(model, minibatches, epochs=5, steps_per_epoch=1_000, callbacks=[ValLoss(model, corpus)])
    ```
    """

    def __init__(self, model: keras.Model, corpus, max_examples: int | None = None):
        super().__init__()
        self._val_nll = SplitNLL(model, corpus, "val", max_examples=max_examples)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_loss"] = self._val_nll().nll


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save `model` in the `.keras` format whenever the monitored value improves, atomically.

    Unlike `keras.callbacks.ModelCheckpoint` it writes to a temporary file and
    renames it into place, so a crash mid-save never leaves a broken model; it
    can save a model other than the one being fitted (a wrapped one); and it
    never saves on a NaN or infinite value.

    Args:
        filepath: destination ending in `.keras`.
        model: the model to save; default the model being fitted.
        monitor: the log key to minimise.
        initial_best: save only values below this (e.g. the best of the run before it was interrupted).

    Attributes:
        saved_epoch: the epoch (0-based) last saved in this session, or `None`.
    """

    def __init__(self, filepath: str | os.PathLike, model: keras.Model | None = None,
                 monitor: str = "val_loss", initial_best: float = math.inf):
        super().__init__()
        self.filepath = Path(filepath)
        self._model_to_save = model
        self.monitor = monitor
        self.best = initial_best
        self.saved_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        with atomic.atomic_path(self.filepath) as tmp:
            model = self.model if self._model_to_save is None else self._model_to_save
            model.save(tmp)
        self.saved_epoch = epoch


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training as soon as the loss is NaN or infinite, and remember where.

    `keras.callbacks.TerminateOnNaN` does the stopping; this one also keeps
    `bad_step` and `bad_loss` so the caller can explain what happened.
    """

    def __init__(self):
        super().__init__()
        self.bad_step = None
        self.bad_loss = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = int(self.model.optimizer.iterations.numpy())
            self.bad_loss = float(loss)
            self.model.stop_training = True


class AtomicCSVLogger(keras.callbacks.Callback):
    """Keep a CSV of the epoch logs, rewritten atomically after every epoch.

    Like `keras.callbacks.CSVLogger(filename, append=True)`, but a crash never
    leaves a torn last line, and an epoch that is run again after a resume
    replaces its old row (and drops any later ones) instead of duplicating it.

    Args:
        filename: the CSV file; rows already in it are kept.

    Example:

    ```python
    model.fit(ds, epochs=10, callbacks=[AtomicCSVLogger("history.csv")])
    ```
    """

    def __init__(self, filename: str | os.PathLike):
        super().__init__()
        self.filename = Path(filename)
        self._rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self._rows = read_csv_rows(self.filename)

    def on_epoch_end(self, epoch, logs=None):
        self._rows = [r for r in self._rows if int(r["epoch"]) < epoch]
        self._rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        keys = ["epoch"] + sorted({k for r in self._rows for k in r} - {"epoch"})
        atomic.write_csv(self.filename, keys, self._rows)


class EmbeddingProjector(keras.callbacks.Callback):
    """Keep TensorBoard's embedding projector up to date with the character embeddings.

    At the end of each epoch it writes the embedding table as `embeddings.tsv`,
    one label per character as `metadata.tsv` and a `projector_config.pbtxt`
    naming both into `log_dir`, so `tensorboard --logdir LOG_DIR` shows every
    character, labelled, in its Projector tab. (`keras.callbacks.TensorBoard`'s
    own `embeddings_freq` saves Keras 3 `.h5` weights, which the projector
    cannot read.)

    Args:
        log_dir: the TensorBoard log directory.
        vocab: the model's vocabulary, for the labels.
        layer_name: the name of the `Embedding` layer, looked up in the model
            being fitted and in the models nested in it.

    Example:

    ```python
    model.fit(ds, epochs=5, callbacks=[keras.callbacks.TensorBoard("logs"),
                                       EmbeddingProjector("logs", vocab)])
    ```
    """

    def __init__(self, log_dir: str | os.PathLike, vocab: Vocabulary, layer_name: str = "embedding"):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.vocab = vocab
        self.layer_name = layer_name

    def on_train_begin(self, logs=None):
        from google.protobuf import text_format
        from tensorboard.plugins import projector

        from keras_makemore.analysis.plots import token_labels

        atomic.write_text(self.log_dir / "metadata.tsv", "".join(f"{label}\n" for label in token_labels(self.vocab)))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = "character_embeddings"
        embedding.tensor_path = "embeddings.tsv"
        embedding.metadata_path = "metadata.tsv"
        atomic.write_text(self.log_dir / "projector_config.pbtxt", text_format.MessageToString(config))

    def on_epoch_end(self, epoch, logs=None):
        table = _find_layer(self.model, self.layer_name).get_weights()[0]
        atomic.write_text(self.log_dir / "embeddings.tsv",
                           "".join("\t".join(f"{v:.7g}" for v in row) + "\n" for row in table))


def _find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            try:
                return _find_layer(layer, name)
            except ValueError:
                pass
    raise ValueError(f"no layer named {name!r} in model {model.name!r}")


def tensorboard_callbacks(log_dir: str | os.PathLike, vocab: Vocabulary) -> list[keras.callbacks.Callback]:
    """`keras.callbacks.TensorBoard` (losses and learning rate per epoch) and an `EmbeddingProjector`."""
    try:
        import tensorboard  # noqa: F401  (Keras' TensorBoard callback needs it to write summaries)
    except ImportError:
        raise UserError("tensorboard logs need the tensorboard package: `pip install tensorboard`, or train "
                        "without them", argument="tensorboard") from None
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False),
            EmbeddingProjector(log_dir, vocab)]


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose checkpoint survives a crash or a full disk at any moment.

    Keras writes `latest.weights.h5` in place, through HDF5: a disk that fills
    during the write leaves a torn or 0-byte file, an HDF5 `RuntimeError`, and
    (in 4 of 4 runs with another process filling the disk, measured) a
    segmentation fault. Here the weights (with the optimizer's state) are
    serialised in memory, written to a temporary file, flushed with `fsync`
    and renamed to `epoch-NNNNNN.weights.h5`, NNNNNN being the epochs done. A
    write that fails raises the plain `OSError` and leaves the earlier
    checkpoints untouched. The newest checkpoint and the one before it are
    kept; at the start of training the newest that loads is restored, so a
    damaged file falls back to the one before.

    Args:
        backup_dir: the checkpoint directory.
        delete_checkpoint: delete `backup_dir` when training ends. The
            keras-makemore `train` passes False and deletes it only once the
            run's history is written, so a failure at that last write can
            still be resumed.

    Example:

    ```python
    backup = AtomicBackupAndRestore("runs/x/backup")
    model.fit(ds, epochs=10, callbacks=[backup])  # run again after a crash: it goes on from the last epoch
    ```
    """

    _PATTERN = re.compile(r"epoch-(\d{6,})\.weights\.h5")

    def __init__(self, backup_dir: str | os.PathLike, delete_checkpoint: bool = True):
        super().__init__(str(backup_dir), delete_checkpoint=delete_checkpoint)
        self.restored_epoch = 0
        self.skipped: list[str] = []  # checkpoints that failed to load
        self._good: Path | None = None  # the newest checkpoint known to be whole

    def checkpoints(self) -> list[tuple[int, Path]]:
        """`(epochs done, path)` of the complete checkpoints, newest first."""
        directory = Path(self.backup_dir)
        found = [(int(m[1]), directory / m[0]) for p in (directory.iterdir() if directory.is_dir() else ())
                 if (m := self._PATTERN.fullmatch(p.name))]
        return sorted(found, reverse=True)

    def on_train_begin(self, logs=None):
        self.skipped = []
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # so that its state is loaded too
        state = [*self.model.variables, *(self.model.optimizer.variables if self.model.optimizer else ())]
        initial = [v.numpy() for v in state]

        def loads(load, name) -> bool:
            try:
                load()
                return True
            except Exception as e:  # a damaged file of any kind: fall back to the one before
                self.skipped.append(f"{name} ({type(e).__name__})")
                for variable, value in zip(state, initial):  # a file that failed half-way loaded some of it
                    variable.assign(value)
                return False

        for epoch, path in self.checkpoints():
            if loads(lambda: self.model.load_weights(path), path.name):
                self.model._initial_epoch = self.restored_epoch = epoch
                self._good = path
                return
        self.model._initial_epoch = 0
        # A backup of keras-makemore 0.x: Keras' own files, with their fallback to the `.bkp` copy.
        loads(super().on_train_begin, Path(self._weights_path).name)
        self.restored_epoch = self.model._initial_epoch

    def _save_model(self):
        from keras.src.saving import saving_lib

        # In memory first, so that HDF5 never writes to a disk that may fill (`save_weights` needs a file name).
        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
        saving_lib._save_state(self.model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=set())
        store.close()
        for _, path in self.checkpoints():  # room for the new file: two checkpoints at most, even while writing
            if path != self._good:
                path.unlink()
        path = Path(self.backup_dir) / f"epoch-{self._current_epoch:06d}.weights.h5"
        atomic.write_bytes_durably(path, buffer.getvalue())
        self._good = path


class EarlyStoppingOnValLoss(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` on `val_loss`, best weights restored, that carries on across a resume.

    A resumed run passes the val losses of its earlier epochs and the weights of
    the best of them, so that it stops at the epoch, and with the weights, of
    the uninterrupted run.

    Args:
        patience: validation passes without a lower val loss before training stops.
        earlier_val_losses: the val loss of each earlier epoch of the run.
        earlier_best_weights: the weights (`model.get_weights()`) of the best
            of those epochs; needed when `earlier_val_losses` is given.

    Example:

    ```python
    model.fit(ds, epochs=50, validation_data=val, callbacks=[EarlyStoppingOnValLoss(patience=3)])
    ```
    """

    def __init__(self, patience: int, earlier_val_losses=(), earlier_best_weights=None):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self._earlier = [(float(v), epoch) for epoch, v in enumerate(earlier_val_losses) if math.isfinite(v)]
        self._earlier_epochs = len(earlier_val_losses)
        if self._earlier and earlier_best_weights is None:
            raise ValueError("earlier_best_weights must be given with earlier_val_losses, got None: pass the "
                             "weights of the epoch with the lowest val loss")
        self._earlier_best_weights = earlier_best_weights

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._earlier:
            self.best, self.best_epoch = min(self._earlier)
            self.wait = self._earlier_epochs - 1 - self.best_epoch
            self.best_weights = self._earlier_best_weights
