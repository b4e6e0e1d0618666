"""`engine.fit` against plain `model.fit` on outside code: keras.io's models and the Keras guides' setups.

Each model is built twice from the same seed and trained on the same minibatches, once by plain
`model.fit` and once by `engine.fit`; the weights, the History and the callback calls must agree
(to the bit without XLA). Shapes are tiny and runs a few steps: this is about equality, not learning.
"""

import gc
import json
import subprocess
import sys
import textwrap
import warnings
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_makemore import engine
from keras_makemore.training.lr_finder import LRFinder

rng = np.random.default_rng(0)


class _Recorder(keras.callbacks.Callback):
    """Every callback call with its logs."""

    def __init__(self):
        super().__init__()
        self.events = []

    def _record(self, name, index=None, logs=None):
        self.events.append((name, index, {k: float(v) for k, v in (logs or {}).items()}))

    def on_train_begin(self, logs=None):
        self._record("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self._record("epoch_begin", epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._record("batch_begin", batch)

    def on_train_batch_end(self, batch, logs=None):
        self._record("batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._record("epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        self._record("train_end", None, logs)


def _assert_same_events(ours, plain, rtol):
    assert [e[:2] for e in ours] == [e[:2] for e in plain]
    for (_, _, a), (_, _, b) in zip(ours, plain):
        assert sorted(a) == sorted(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=1e-7, err_msg=key)


def _variables(model):
    """Weights, then every optimizer's state (a GAN has two)."""
    optimizers = [v for v in vars(model).values() if isinstance(v, keras.optimizers.Optimizer)]
    return [v.numpy() for v in model.weights] + [v.numpy() for o in optimizers for v in o.variables]


def _train_both(make_model, make_dataset, *, epochs=2, atol=0.0, rtol=1e-6, engine_args=None, **fit_args):
    """Train one model by plain fit and one by engine.fit; assert they end alike; return both."""
    models, histories, recorders = [], [], []
    for trainer in ("plain", "engine"):
        keras.utils.set_random_seed(1)
        model = make_model()
        recorder = _Recorder()
        if trainer == "plain":
            history = model.fit(make_dataset(), epochs=epochs, callbacks=[recorder], verbose=0,
                                **{"shuffle": False, **fit_args})
        else:
            history = engine.fit(model, make_dataset(), epochs=epochs, callbacks=[recorder], verbose=0,
                                 **(engine_args or {}), **fit_args)
        models.append(model), histories.append(history.history), recorders.append(recorder.events)
    (plain, ours), (plain_history, history) = models, histories
    assert len(_variables(ours)) == len(_variables(plain)) > 0
    for a, b in zip(_variables(ours), _variables(plain)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    assert set(history) == set(plain_history)
    for key in history:
        np.testing.assert_allclose(history[key], plain_history[key], rtol=rtol, atol=1e-7, err_msg=key)
    _assert_same_events(recorders[1], recorders[0], rtol)
    return plain, ours


def _dataset(*arrays, batch=8, repeat=False):
    """A fresh shuffled dataset per model: a shuffled dataset's order advances with each pass over it."""
    ds = tf.data.Dataset.from_tensor_slices(arrays if len(arrays) > 1 else arrays[0])
    ds = ds.shuffle(64, seed=1).batch(batch, drop_remainder=True)
    return ds.repeat() if repeat else ds


# keras.io/examples/vision/mnist_convnet, shrunk to 12x12 images.
IMAGES = rng.random((64, 12, 12, 1)).astype("float32")
DIGITS = keras.utils.to_categorical(rng.integers(0, 10, 64), 10)


def _mnist_convnet(jit_compile=False):
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], steps_per_execution=4,
                  jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile, xla, atol", [
    (False, "auto", 0.0),
    pytest.param(True, "auto", 1e-5, marks=pytest.mark.slow),
    pytest.param(True, "loop", 1e-5, marks=pytest.mark.slow),
])
def test_mnist_convnet_with_dropout_and_accuracy(jit_compile, xla, atol):
    # "auto" compiles each step of a convnet, as plain fit does; "loop" (the user's choice) the whole loop.
    _train_both(lambda: _mnist_convnet(jit_compile), lambda: _dataset(IMAGES, DIGITS), atol=atol, rtol=1e-5,
                validation_data=_dataset(IMAGES, DIGITS), engine_args={"xla": xla})


# keras.io/examples/generative/lstm_character_level_text_generation, with an embedding for the characters.
CHARACTERS = rng.integers(0, 12, (64, 6))
NEXT = rng.integers(0, 12, 64)


def test_character_lstm():
    def make():
        model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(12, 4),
                                  keras.layers.LSTM(8), keras.layers.Dense(12, activation="softmax")])
        model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.RMSprop(0.01),
                      steps_per_execution=2)
        return model

    _train_both(make, lambda: _dataset(CHARACTERS, NEXT))


# keras.io/examples/nlp/text_classification_from_scratch, shrunk.
TOKENS = rng.integers(0, 50, (64, 10))
SENTIMENT = rng.integers(0, 2, (64, 1)).astype("float32")


def test_conv1d_text_classifier():
    def make():
        inputs = keras.Input((10,), dtype="int64")
        h = keras.layers.Embedding(50, 8)(inputs)
        h = keras.layers.Dropout(0.5)(h)
        h = keras.layers.Conv1D(8, 3, padding="valid", activation="relu", strides=2)(h)
        h = keras.layers.GlobalMaxPooling1D()(h)
        outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(8, activation="relu")(h))
        model = keras.Model(inputs, outputs)
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"], steps_per_execution=4)
        return model

    _train_both(make, lambda: _dataset(TOKENS, SENTIMENT), epochs=3)


# keras.io/guides/functional_api: the ticket model, dict in and dict out, with loss weights.
TICKETS = {"title": rng.integers(0, 30, (64, 5)), "body": rng.integers(0, 30, (64, 8)),
           "tags": rng.integers(0, 2, (64, 4)).astype("float32")}
ROUTES = {"priority": rng.random((64, 1)).astype("float32"), "department": rng.integers(0, 3, 64)}


def _ticket_model(metrics=True):
    title, body = keras.Input((5,), name="title"), keras.Input((8,), name="body")
    tags = keras.Input((4,), name="tags")
    features = keras.layers.concatenate([keras.layers.GlobalMaxPooling1D()(keras.layers.Embedding(30, 4)(title)),
                                         keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(30, 4)(body)),
                                         tags])
    priority = keras.layers.Dense(1, name="priority")(features)
    department = keras.layers.Dense(3, name="department")(features)
    model = keras.Model({"title": title, "body": body, "tags": tags},
                        {"priority": priority, "department": department})
    model.compile(optimizer=keras.optimizers.RMSprop(1e-2), steps_per_execution=4,
                  loss={"priority": keras.losses.BinaryCrossentropy(from_logits=True),
                        "department": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                  loss_weights={"priority": 1.0, "department": 0.2},
                  metrics={"department": ["accuracy"]} if metrics else None)
    return model


def test_dict_in_dict_out_ticket_model_with_loss_weights():
    _train_both(_ticket_model, lambda: _dataset(TICKETS, ROUTES))


def test_loss_only_model_with_dict_inputs_and_nested_targets():
    """No compiled metrics, but a loss per output, which Keras tracks: each step's own train_step."""
    _train_both(lambda: _ticket_model(metrics=False), lambda: _dataset(TICKETS, ROUTES))


LEFT, RIGHT = rng.normal(size=(64, 3)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
TARGET = rng.normal(size=(64, 1)).astype("float32")


@pytest.mark.parametrize("jit_compile, atol", [(False, 0.0), (True, 1e-6)])
def test_two_input_loss_only_model(jit_compile, atol):
    def make():
        left, right = keras.Input((3,)), keras.Input((2,))
        h = keras.layers.Dense(8, activation="tanh")(keras.layers.concatenate([left, right]))
        model = keras.Model([left, right], keras.layers.Dense(1)(h))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", steps_per_execution=4,
                      jit_compile=jit_compile)
        return model

    # One output and no metrics: the loss-only loop, on a tuple of inputs.
    _train_both(make, lambda: _dataset((LEFT, RIGHT), TARGET), atol=atol)


class GuideModel(keras.Model):
    """keras.io/guides/custom_train_step_in_tensorflow: the first example's `train_step`."""

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


def test_custom_train_step_model():
    def make():
        inputs = keras.Input((3,))
        model = GuideModel(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(inputs)))
        model.compile(optimizer="adam", loss="mse", metrics=["mae"], steps_per_execution=4)
        return model

    _train_both(make, lambda: _dataset(LEFT, TARGET))


class GAN(keras.Model):
    """keras.io/examples/generative/dcgan_overriding_train_step, dense and tiny: images only, no `call`."""

    def __init__(self, latent_dim=2):
        super().__init__()
        self.discriminator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                                               keras.layers.LeakyReLU(0.2), keras.layers.Dense(1)])
        self.generator = keras.Sequential([keras.Input((latent_dim,)), keras.layers.Dense(8, activation="relu"),
                                           keras.layers.Dense(4)])
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer, loss_fn, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        batch_size = tf.shape(real_images)[0]
        noise = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        images = tf.concat([self.generator(noise), real_images], axis=0)
        labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(tf.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            d_loss = self.loss_fn(labels, self.discriminator(images))
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
        noise = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            g_loss = self.loss_fn(tf.zeros((batch_size, 1)), self.discriminator(self.generator(noise)))
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def test_x_only_gan_with_its_own_train_step():
    def make():
        gan = GAN()
        gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3),
                    loss_fn=keras.losses.BinaryCrossentropy(from_logits=True), steps_per_execution=4)
        return gan

    reals = rng.normal(size=(64, 4)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train_both(make, lambda: _dataset(reals), shuffle=True)
    # shuffle= is ignored for a dataset by plain fit and engine.fit alike: Keras 3.15 says so once for each,
    # earlier Keras says nothing.
    assert sum("`shuffle=True` was passed" in str(w.message) for w in caught) in (0, 2)


def test_mixed_precision_loss_scaling():
    def make():
        policy = keras.mixed_precision.dtype_policy()
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        try:
            inputs = keras.Input((3,))
            h = keras.layers.Dense(8, activation="relu")(inputs)
            outputs = keras.layers.Activation("linear", dtype="float32")(keras.layers.Dense(1)(h))
            model = keras.Model(inputs, outputs)
        finally:
            keras.mixed_precision.set_dtype_policy(policy)
        model.compile(optimizer="adam", loss="mse", steps_per_execution=4)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        return model

    _train_both(make, lambda: _dataset(LEFT, TARGET))


def test_sample_weights_in_the_dataset():
    weights = rng.random(64).astype("float32")

    def make():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", steps_per_execution=4, metrics=["accuracy"], weighted_metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    _train_both(make, lambda: _dataset(LEFT, NEXT % 4, weights))


def test_a_repeated_dataset_with_steps_per_epoch():
    def make():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse", steps_per_execution=4)
        return model

    _train_both(make, lambda: _dataset(LEFT, TARGET, repeat=True), epochs=3, steps_per_epoch=12)


# ---- later compiles, eager mode, schedules and the LR finder, the leak ----

def _transfer_model():
    """keras.io/guides/transfer_learning: a frozen base, a new head."""
    base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu")], name="base")
    base.trainable = False
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(base(inputs, training=False)))
    model.compile(optimizer=keras.optimizers.Adam(0.01), steps_per_execution=4,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model, base


def test_a_second_compile_is_honoured():
    """The transfer-learning recipe: fit the head, unfreeze the base, compile with a low rate and new metrics."""
    results = []
    for trainer in ("plain", "engine"):
        keras.utils.set_random_seed(1)
        model, base = _transfer_model()

        def fit(model):
            if trainer == "plain":
                return model.fit(_dataset(LEFT, NEXT % 2), epochs=1, verbose=0, shuffle=False).history
            return engine.fit(model, _dataset(LEFT, NEXT % 2), epochs=1, verbose=0).history

        first = fit(model)
        frozen = [w.numpy() for w in base.weights]
        base.trainable = True
        model.compile(optimizer=keras.optimizers.SGD(1e-2), steps_per_execution=4,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["sparse_categorical_accuracy"])
        second = fit(model)
        assert not any(np.array_equal(a, w.numpy()) for a, w in zip(frozen, base.weights))  # the base moved
        model.compile(optimizer=keras.optimizers.SGD(0.0), steps_per_execution=2,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        still = [w.numpy() for w in model.weights]
        third = fit(model)
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(still, model.weights))  # a rate of 0 moves nothing
        results.append((first, second, third, [w.numpy() for w in model.weights]))
    (plain, ours) = results
    for a, b in zip(plain[:3], ours[:3]):
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-6)
    assert set(ours[1]) == {"loss", "sparse_categorical_accuracy"}
    for a, b in zip(plain[3], ours[3]):
        np.testing.assert_array_equal(a, b)


def test_make_train_function_force_makes_a_new_one():
    keras.utils.set_random_seed(1)
    model, _ = _transfer_model()
    made = []

    class Force(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            made.append(model.train_function)
            model.make_train_function(force=True)
            made.append(model.train_function)

    engine.fit(model, _dataset(LEFT, NEXT % 2), verbose=0, callbacks=[Force()])
    engine.fit(model, _dataset(LEFT, NEXT % 2), verbose=0)
    assert made[0] is not made[1]


def test_run_eagerly_runs_every_step_eagerly():
    calls = []

    class Spy(keras.layers.Layer):
        def call(self, x):
            calls.append(tf.executing_eagerly())  # what a user debugging with print() relies on
            return x

    def make():
        model = keras.Sequential([keras.Input((3,)), Spy(), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse", steps_per_execution=4, run_eagerly=True)
        return model

    _train_both(make, lambda: _dataset(LEFT, TARGET))
    assert calls.count(True) == 2 * 16  # plain fit's 16 steps and the engine's 16, each run eagerly
    calls.clear()
    keras.utils.set_random_seed(1)
    model = make()
    model.run_eagerly = False  # and back: traced again
    engine.fit(model, _dataset(LEFT, TARGET), verbose=0)
    assert calls and not any(calls)


def _schedule_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.05, 10, 0.9)),
                  loss="mse")
    return model


@pytest.mark.parametrize("order", ["sweep first", "fit first"])
def test_lr_finder_with_a_schedule_before_and_after_engine_fit(order):
    """The sweep runs its own rates, and the fit its schedule, whichever comes first."""
    results = []
    for trainer in ("plain", "engine"):
        keras.utils.set_random_seed(1)
        model = _schedule_model()
        data = lambda: _dataset(LEFT, TARGET, repeat=True)  # noqa: E731
        run = (lambda **kw: model.fit(data(), verbose=0, shuffle=False, **kw)) if trainer == "plain" else (
            lambda **kw: engine.fit(model, data(), verbose=0, **kw))
        finder = LRFinder(start_lr=1e-4, end_lr=10.0, num_steps=20, diverge_factor=None)
        if order == "sweep first":
            run(steps_per_epoch=20, callbacks=[finder])
            history = run(steps_per_epoch=10, epochs=2).history
        else:
            history = run(steps_per_epoch=10, epochs=2).history
            run(steps_per_epoch=20, callbacks=[finder])
        results.append((finder.result, history, [w.numpy() for w in model.weights]))
    (plain_sweep, plain_history, plain_weights), (sweep, history, weights) = results
    np.testing.assert_array_equal(sweep.learning_rates, plain_sweep.learning_rates)
    np.testing.assert_allclose(sweep.losses, plain_sweep.losses, rtol=1e-6)
    assert sweep.learning_rate == plain_sweep.learning_rate
    np.testing.assert_allclose(history["loss"], plain_history["loss"], rtol=1e-6)
    assert np.isfinite(history["loss"]).all()
    for a, b in zip(weights, plain_weights):
        np.testing.assert_array_equal(a, b)


def test_models_trained_by_engine_fit_are_freed():
    refs = []
    for _ in range(3):
        model, _ = _transfer_model()
        engine.fit(model, _dataset(LEFT, NEXT % 2), verbose=0)
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert [r() for r in refs] == [None] * 3


def test_a_wrong_xla_scope_is_refused():
    model, _ = _transfer_model()
    with pytest.raises(ValueError, match="xla must be one of auto, loop, step, got 'all'"):
        engine.fit(model, _dataset(LEFT, NEXT % 2), xla="all")


_MIRRORED = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_makemore import engine

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 3)).astype("float32"), rng.integers(0, 4, 64)
    out = {}
    for repeat in (False, True):
        for trainer in ("plain", "engine"):
            strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
            with strategy.scope():
                keras.utils.set_random_seed(1)
                model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                                          keras.layers.Dense(4)])
                # Plain fit under MirroredStrategy fails with steps_per_execution > 1 (Keras 3.15, CPU):
                # the reference runs one step per call, on the same minibatches.
                model.compile(optimizer="adam", steps_per_execution=1 if trainer == "plain" else 2,
                              metrics=["accuracy"],
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
            args = {"epochs": 2, "verbose": 0}
            if repeat:
                ds, args["steps_per_epoch"] = ds.repeat(), 4
            if trainer == "plain":
                history = model.fit(ds, shuffle=False, **args)
            else:
                history = engine.fit(model, ds, **args)
            out[f"{trainer} {repeat}"] = {"history": history.history, "steps": int(model.optimizer.iterations.numpy()),
                                          "weights": [w.numpy().tolist() for w in model.weights]}
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_finite_and_repeated_datasets():
    out = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for repeat, steps in (("False", 16), ("True", 8)):
        plain, ours = report[f"plain {repeat}"], report[f"engine {repeat}"]
        assert ours["steps"] == plain["steps"] == steps
        assert set(ours["history"]) == set(plain["history"]) == {"loss", "accuracy"}
        for key in plain["history"]:
            np.testing.assert_allclose(ours["history"][key], plain["history"][key], rtol=1e-5)
        for a, b in zip(ours["weights"], plain["weights"]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
