"""The in-graph minibatch path trains exactly like plain `model.fit` and keeps callbacks whole."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_makemore.data import Corpus, read_words
from keras_makemore.errors import UserError
from keras_makemore.model import build_model
from keras_makemore.training import PRESETS, TrainConfig, _placeholder_batches, _RandomMinibatchTrainer, train

SEED, BATCH, STEPS = 3, 16, 200


def _same_minibatches_as_the_fast_path(x, y):
    """A tf.data pipeline yielding, at step t, the minibatch the fast path draws at step t."""
    def draw(step):
        index = tf.random.stateless_uniform([BATCH], seed=tf.stack([tf.constant(SEED, tf.int32), step]),
                                            maxval=len(x), dtype=tf.int32)
        return tf.gather(x, index), tf.gather(y, index)
    return tf.data.Dataset.range(STEPS).map(lambda s: draw(tf.cast(s, tf.int32)))


def _fresh_model(vocab_size):
    keras.utils.set_random_seed(0)
    return build_model(vocab_size, 3, 6, 24)


@pytest.mark.parametrize("xla", [False, True])
def test_fast_path_equals_plain_fit_on_the_same_minibatches(words_path, xla):
    corpus = Corpus(read_words(words_path), 3)
    x, y = corpus.examples("train")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    plain = _fresh_model(corpus.vocab.size)
    plain.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    plain_history = plain.fit(_same_minibatches_as_the_fast_path(x, y), epochs=1, verbose=0, shuffle=False)

    fast_model = _fresh_model(corpus.vocab.size)
    fast = _RandomMinibatchTrainer(fast_model, x, y, BATCH, SEED, xla=xla)
    fast.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, steps_per_execution=50, jit_compile=False)
    fast_history = fast.fit(_placeholder_batches(), steps_per_epoch=STEPS, epochs=1, verbose=0, shuffle=False)

    assert int(fast.optimizer.iterations) == int(plain.optimizer.iterations) == STEPS
    for a, b in zip(fast_model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The epoch's loss is the mean over all its steps, four chunks of 50 here, as in plain fit.
    np.testing.assert_allclose(fast_history.history["loss"], plain_history.history["loss"], rtol=1e-5)


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, float(logs["loss"])))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_callbacks_see_every_epoch_and_batch(tmp_path, words_path):
    recorder = _Recorder()
    config = TrainConfig(data=str(words_path), steps=600, eval_every=200, hidden_units=16, embed_dim=3, seed=1)
    train(config, tmp_path / "run", callbacks=[recorder], verbose=0)
    kinds = [e[0] for e in recorder.events]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    epochs = [e for e in recorder.events if e[0] == "epoch_end"]
    assert [e[1] for e in epochs] == [0, 1, 2]
    assert all(e[2] == ["loss", "val_loss"] for e in epochs)
    batches = [e for e in recorder.events if e[0] == "batch_end"]
    # 200 steps an epoch run as one chunk of 200: Keras reports the chunk's last batch index.
    assert [e[1] for e in batches] == [199, 199, 199]
    assert all(np.isfinite(e[2]) for e in batches)


def test_presets():
    lecture = TrainConfig.from_preset("lecture")
    assert (lecture.block_size, lecture.embed_dim, lecture.hidden_units) == (3, 10, 200)  # the lecture's network
    exact = TrainConfig()  # the dataclass defaults are the lecture's own recipe
    assert (exact.batch_size, exact.steps, exact.optimizer, exact.lr, exact.lr_schedule) == (32, 200_000, "sgd", 0.1, "step")
    best = TrainConfig.from_preset("best", hidden_units=8)
    assert best.hidden_units == 8 and best.block_size == PRESETS["best"]["block_size"]
    with pytest.raises(UserError, match="unknown preset 'huge': choose one of lecture, best"):
        TrainConfig.from_preset("huge")
