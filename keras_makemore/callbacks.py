"""Keras callbacks usable in any `model.fit` pipeline."""

import csv
import io
import math
import os
from pathlib import Path

import keras

from keras_makemore import _atomic
from keras_makemore.data import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.lr_finder import LRFinder  # noqa: F401  (its own module; one import path for all callbacks)
from keras_makemore.rundir import read_csv_rows
from keras_makemore.sampling import sample_words


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
        self.print_fn("samples: " + " ".join(words))


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
        initial_best: save only values below this (e.g. the best of an earlier session).
    """

    def __init__(self, filepath: str | os.PathLike, model: keras.Model | None = None,
                 monitor: str = "val_loss", initial_best: float = math.inf):
        super().__init__()
        self.filepath = Path(filepath)
        self._model_to_save = model
        self.monitor = monitor
        self.best = initial_best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value) or value >= self.best:
            return
        self.best = float(value)
        with _atomic.atomic_path(self.filepath) as tmp:
            model = self.model if self._model_to_save is None else self._model_to_save
            model.save(tmp)


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
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        _atomic.write_text(self.filename, out.getvalue())


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

        from keras_makemore.plots import token_labels

        _atomic.write_text(self.log_dir / "metadata.tsv", "".join(f"{label}\n" for label in token_labels(self.vocab)))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = "character_embeddings"
        embedding.tensor_path = "embeddings.tsv"
        embedding.metadata_path = "metadata.tsv"
        _atomic.write_text(self.log_dir / "projector_config.pbtxt", text_format.MessageToString(config))

    def on_epoch_end(self, epoch, logs=None):
        table = _find_layer(self.model, self.layer_name).get_weights()[0]
        _atomic.write_text(self.log_dir / "embeddings.tsv",
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
