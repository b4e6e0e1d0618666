"""Keras callbacks usable in any `model.fit` pipeline."""

import math
import os
from pathlib import Path

import keras

from keras_makemore import _atomic
from keras_makemore.data import Vocabulary
from keras_makemore.lr_finder import LRFinder  # noqa: F401  (its own module; one import path for all callbacks)
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
