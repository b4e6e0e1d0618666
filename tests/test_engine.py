"""`engine.fit` trains any compiled Keras model like plain `model.fit`, many minibatches per compiled call."""

import configparser
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from packaging.specifiers import SpecifierSet

from keras_makemore import engine
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import read_words
from keras_makemore.data.windows import random_minibatches
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train

rng = np.random.default_rng(0)
IMAGES = rng.normal(size=(96, 8, 8, 1)).astype("float32")
FEATURES = rng.normal(size=(96, 3)).astype("float32")
LABELS = rng.integers(0, 4, 96)


def _two_input_cnn(jit_compile: bool) -> keras.Model:
    """A model that is not keras-makemore's: a small CNN with a second, dense input."""
    image, features = keras.Input((8, 8, 1)), keras.Input((3,))
    h = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1))(image)
    h = keras.layers.Concatenate()([keras.layers.Flatten()(h), features])
    logits = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(2))(h)
    model = keras.Model([image, features], logits)
    model.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"], steps_per_execution=4,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit_compile)
    return model


def _minibatches() -> tf.data.Dataset:
    # A new dataset object per model: a shuffled dataset's reshuffles advance with each pass over it.
    ds = tf.data.Dataset.from_tensor_slices(((IMAGES, FEATURES), LABELS))
    return ds.shuffle(96, seed=1).batch(8, drop_remainder=True)  # 12 minibatches: 3 chunks of 4


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append("train_end")


# Without XLA the chunked loop runs the very ops of plain fit: the weights are equal to the bit.
# XLA fuses the loop's ops differently from one step's: equal within 1e-6 after 36 Adam steps.
@pytest.mark.parametrize("jit_compile, atol", [(False, 0.0), (True, 1e-6)])
def test_a_two_input_cnn_ends_with_the_weights_of_plain_fit(jit_compile, atol):
    plain = _two_input_cnn(jit_compile)
    plain_history = plain.fit(_minibatches(), epochs=3, verbose=0, shuffle=False)

    ours = _two_input_cnn(jit_compile)
    recorder = _Recorder()
    history = engine.fit(ours, _minibatches(), epochs=3, verbose=0,
                         validation_data=_minibatches(), callbacks=[recorder])

    assert int(ours.optimizer.iterations) == int(plain.optimizer.iterations) == 36
    for a, b in zip(ours.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(history.history[key], plain_history.history[key], rtol=1e-6)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # Callbacks fire as in plain fit with steps_per_execution=4: one batch event per chunk.
    assert recorder.events[0] == "train_begin" and recorder.events[-1] == "train_end"
    assert [e[1] for e in recorder.events if e[0] == "batch"] == [3, 7, 11] * 3
    assert [e[1] for e in recorder.events if e[0] == "epoch"] == [0, 1, 2]
    # Afterwards the model is itself again: plain fit works on it.
    ours.fit(_minibatches(), epochs=1, verbose=0, shuffle=False)
    assert int(ours.optimizer.iterations) == 48


def _loss_only_model(jit_compile: bool) -> keras.Model:
    """A model compiled with a loss and no metrics: `engine.fit` sums its losses in the loop."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="tanh",
                                                                    kernel_initializer=keras.initializers.GlorotUniform(3)),
                              keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(4))])
    model.compile(optimizer=keras.optimizers.SGD(0.1), steps_per_execution=4, jit_compile=jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("jit_compile, atol", [(False, 0.0), (True, 1e-6)])
def test_a_loss_only_model_ends_with_the_weights_and_losses_of_plain_fit(jit_compile, atol):
    def minibatches():
        return tf.data.Dataset.from_tensor_slices((FEATURES, LABELS)).shuffle(96, seed=1).batch(8, drop_remainder=True)

    plain = _loss_only_model(jit_compile)
    plain_history = plain.fit(minibatches(), epochs=3, verbose=0, shuffle=False)
    ours = _loss_only_model(jit_compile)
    recorder = _Recorder()
    history = engine.fit(ours, minibatches(), epochs=3, verbose=0, callbacks=[recorder])

    assert int(ours.optimizer.iterations) == int(plain.optimizer.iterations) == 36
    for a, b in zip(ours.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    # The epoch's loss is the mean over all its steps, as plain fit's, though recorded once per chunk.
    np.testing.assert_allclose(history.history["loss"], plain_history.history["loss"], rtol=1e-6)
    assert [e[1] for e in recorder.events if e[0] == "batch"] == [3, 7, 11] * 3


def test_the_lecture_minibatches_resume_exactly(words_path):
    x, y = Corpus(read_words(words_path), 3).examples("train")
    whole = list(random_minibatches(x, y, 16, seed=5, steps=250))
    resumed = list(random_minibatches(x, y, 16, seed=5, steps=250, first_step=137))
    assert len(whole) == 250 and len(resumed) == 113
    for (a, b), (c, d) in zip(whole[137:], resumed):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert not np.array_equal(whole[0][0], whole[1][0])  # a new draw every step


@pytest.mark.parametrize("make, fit_args, match", [
    (lambda: tf.data.Dataset.from_tensor_slices((IMAGES, LABELS)).batch(8), {}, "one fixed size"),
    (lambda: _minibatches(), {"xla": "jit"}, "xla must be one of auto, loop, step, got 'jit'"),
    (lambda: IMAGES, {}, "dataset must be a tf.data.Dataset .* got ndarray"),
    (lambda: _minibatches(), {"steps_per_epoch": 6}, "steps_per_epoch must be a multiple .* got 6"),
    (lambda: _minibatches(), {"batch_size": 8}, "batch_size=8 is not supported"),
])
def test_arguments_are_checked_with_their_name_and_value(make, fit_args, match):
    model = _two_input_cnn(jit_compile=False)
    with pytest.raises(ValueError, match=match):
        engine.fit(model, make(), **fit_args)


def test_an_uncompiled_model_is_refused():
    with pytest.raises(ValueError, match="model must be compiled"):
        engine.fit(keras.Sequential([keras.layers.Dense(1)]), _minibatches())


def test_train_fires_callbacks_every_epoch_and_chunk(tmp_path, words_path):
    recorder = _Recorder()
    config = TrainConfig(data=str(words_path), steps=600, eval_every=200, hidden_units=16, embed_dim=3, seed=1)
    train(config, tmp_path / "run", callbacks=[recorder], verbose=0)
    epochs = [e for e in recorder.events if e[0] == "epoch"]
    assert [(e[1], e[2]) for e in epochs] == [(0, ["loss", "val_loss"]), (1, ["loss", "val_loss"]),
                                              (2, ["loss", "val_loss"])]
    # 200 steps an epoch run as one chunk of 200: Keras reports the chunk's last batch index.
    assert [e[1] for e in recorder.events if e[0] == "batch"] == [199, 199, 199]


def test_the_supported_keras_range_is_the_package_metadatas_and_this_keras_is_in_it(recwarn):
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    keras_line = [r for r in setup_cfg["options"]["install_requires"].split("\n") if r.startswith("keras")]
    assert engine.supported_keras() == str(SpecifierSet(keras_line[0][len("keras"):]))
    assert keras.__version__ in SpecifierSet(engine.supported_keras())
    engine._KerasAdapter.check(_loss_only_model(jit_compile=False))
    assert not [w for w in recwarn if "keras_makemore.engine" in str(w.message)]  # no warning inside the range


def test_a_keras_outside_the_range_is_warned_about_once(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "3.11.0")
    monkeypatch.setattr(engine._KerasAdapter, "_warned", set())
    model = _loss_only_model(jit_compile=False)
    with pytest.warns(UserWarning, match=r"supports keras<4,>=3\.12 and found Keras 3\.11\.0"):
        engine._KerasAdapter.check(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine._KerasAdapter.check(model)


def test_a_missing_keras_internal_is_named_with_what_it_is_for(monkeypatch):
    monkeypatch.setattr(engine, "_INTERNALS", (("model", "_gone", "what the engine does with it"),) + engine._INTERNALS)
    with pytest.raises(RuntimeError, match=r"has no _gone \(what the engine does with it\), which keras_makemore"
                                           r".engine needs: pip install 'keras<4,>=3\.12'"):
        engine.fit(_loss_only_model(jit_compile=False), _minibatches())


def test_a_changed_keras_train_step_is_run_as_is(monkeypatch):
    """If Keras' train_step is not the one the loss-only step reproduces, the engine runs Keras' own."""
    monkeypatch.setattr(engine, "_KNOWN_TRAIN_STEP", "another")
    monkeypatch.setattr(engine._KerasAdapter, "_warned", set())

    def minibatches():
        return tf.data.Dataset.from_tensor_slices((FEATURES, LABELS)).batch(8, drop_remainder=True)

    plain = _loss_only_model(jit_compile=False)
    plain.fit(minibatches(), verbose=0, shuffle=False)
    ours = _loss_only_model(jit_compile=False)
    with pytest.warns(UserWarning, match="changed Model.train_step: keras_makemore.engine runs it as is"):
        engine.fit(ours, minibatches(), verbose=0)
    for a, b in zip(ours.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
