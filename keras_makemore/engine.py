"""Train any compiled Keras model many minibatches per call: one compiled loop inside `model.fit`.

Plain `model.fit` on a `tf.data.Dataset` runs one minibatch per graph call
(or, with `steps_per_execution`, pulls each minibatch from the input pipeline
inside a loop that XLA cannot compile). For a small network the per-step
overhead dominates: the lecture MLP trains at about 500 steps/s that way.
`fit` here groups `steps_per_execution` consecutive minibatches of the
dataset into one tensor (`dataset.batch(steps_per_execution)`), and runs the
model's own `train_step` over them in one `tf.while_loop`, compiled by XLA as a
whole when the model was compiled with `jit_compile`. Everything else is
`model.fit`: callbacks, History, `BackupAndRestore`, the progress bar,
validation and `tf.distribute` work as usual, and the model is trained on
exactly the minibatches, in exactly the order, that plain `fit` would use.

The Keras internals this needs (`make_train_function` and the symbolic build)
are touched only by `_KerasAdapter` below, which checks the Keras version, and
by `learning_rate_setting`, which the learning-rate finder uses.
"""

import contextlib
import warnings
import weakref
from typing import Iterator

import keras
import tensorflow as tf

TESTED_KERAS = "3.15"
_UNSUPPORTED_FIT_ARGS = ("y", "batch_size", "sample_weight", "class_weight", "validation_split")
_CHUNK_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, tuple]" = weakref.WeakKeyDictionary()


def fit(model: keras.Model, dataset: tf.data.Dataset, **fit_args) -> keras.callbacks.History:
    """`model.fit(dataset, **fit_args)`, running `model.steps_per_execution` minibatches per compiled call.

    Args:
        model: a compiled Keras model. Its `steps_per_execution` (from
            `compile`) is the number of minibatches per call, and its
            `jit_compile` says whether XLA compiles the loop over them.
        dataset: a `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)`
            minibatches, all of one size (batch with `drop_remainder=True`).
            A finite dataset is one epoch, as in `model.fit`; a repeated one
            needs `steps_per_epoch`.
        **fit_args: any other `model.fit` argument (`epochs`,
            `steps_per_epoch`, `callbacks`, `validation_data`, `verbose`,
            `initial_epoch`, ...). `steps_per_epoch` must be a multiple of
            `steps_per_execution`.

    Returns:
        The `History` that `model.fit` returns.

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    >>> y = x.sum(axis=1, keepdims=True)
    >>> ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512, seed=0).batch(32, drop_remainder=True)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse", steps_per_execution=16)
    >>> history = fit(model, ds.repeat(), epochs=3, steps_per_epoch=64, verbose=0)
    >>> len(history.history["loss"])
    3
    """
    _check_arguments(model, dataset, fit_args)
    adapter = _KerasAdapter(model)
    chunk_size = model.steps_per_execution
    chunks = _chunks(dataset, chunk_size, model.distribute_strategy)
    adapter.build(dataset.element_spec)
    with adapter.train_function(_chunk_function(model, adapter)):
        return model.fit(chunks, shuffle=False, **fit_args)


def _check_arguments(model: keras.Model, dataset, fit_args: dict) -> None:
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError(f"model must be compiled with an optimizer and a loss before training, got model "
                         f"{model.name!r} uncompiled: call model.compile(optimizer=..., loss=...) first")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset of (x, y) minibatches, got {type(dataset).__name__}: "
                         "e.g. tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise ValueError(f"dataset must yield (x, y) or (x, y, sample_weight) minibatches, got elements {spec}")
    sizes = {s.shape[0] if s.shape.rank else None for s in tf.nest.flatten(spec)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"dataset must yield minibatches of one fixed size, got element_spec {spec}: "
                         "batch it with drop_remainder=True")
    given = [name for name in _UNSUPPORTED_FIT_ARGS if fit_args.get(name) is not None]
    if given:
        raise ValueError(f"{given[0]}={fit_args[given[0]]!r} is not supported: the dataset carries the "
                         "minibatches (and their sample weights)")
    chunk_size = model.steps_per_execution
    steps_per_epoch = fit_args.get("steps_per_epoch")
    if steps_per_epoch is not None and steps_per_epoch % chunk_size:
        raise ValueError(f"steps_per_epoch must be a multiple of the model's steps_per_execution "
                         f"({chunk_size}), got {steps_per_epoch}")
    if model.jit_compile and model.distribute_strategy.num_replicas_in_sync > 1:
        # Measured: XLA cannot compile a loop whose variables live on several devices.
        raise ValueError(f"jit_compile=True compiles the loop for one device, and the model's strategy runs "
                         f"{model.distribute_strategy.num_replicas_in_sync} replicas: compile with jit_compile=False")


def _chunks(dataset: tf.data.Dataset, chunk_size: int, strategy: tf.distribute.Strategy):
    """`chunk_size` consecutive minibatches per element; under a strategy, each replica's share of each.

    Keras counts an epoch of a finite dataset in elements; the chunked dataset
    claims the cardinality of the minibatches, so `fit` counts steps (it calls
    the train function once per `chunk_size` of them and never reads past the
    last chunk).
    """
    minibatches = int(dataset.cardinality())
    chunks = dataset.batch(chunk_size)
    if minibatches >= 0:
        chunks = chunks.apply(tf.data.experimental.assert_cardinality(minibatches))
    chunks = chunks.prefetch(2)
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return chunks

    def replica_shares(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each local replica dequeues one element in turn: emit every chunk once per local replica,
        # sliced to that replica's share of each minibatch, so the replicas together train on
        # exactly the minibatches one device would.
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def shares(*chunk):
            def share(replica):
                replica = tf.cast(replica, tf.int32)
                size = tf.shape(chunk[0])[1] // replicas
                return tuple(t[:, replica * size:(replica + 1) * size] for t in chunk)
            return tf.data.Dataset.range(first, first + local).map(share)

        return chunks.flat_map(shares)

    return strategy.distribute_datasets_from_function(replica_shares)


def _chunk_function(model: keras.Model, adapter: "_KerasAdapter"):
    """The model's train function, made once per model and XLA setting as Keras makes its own."""
    made = _CHUNK_FUNCTIONS.get(model)
    if made is None or made[0] != model.jit_compile:
        made = _CHUNK_FUNCTIONS[model] = (model.jit_compile, _make_chunk_function(model, adapter))
    return made[1]


def _make_chunk_function(model: keras.Model, adapter: "_KerasAdapter"):
    """The train function: one training step per minibatch of a chunk, all in one graph.

    A model that trains with Keras' own `train_step` and tracks only its loss
    (no compiled metrics), on one replica, takes the loss-only step of
    `_KerasAdapter.loss_step`: the chunk's losses are summed in the loop and
    recorded in the loss tracker once, as their mean. Keras' `train_step`
    updates the tracker and reads every metric's result at each step; inside
    the compiled loop that halved the lecture MLP's speed (8,600 against
    14,700 steps/s, measured side by side). Any other model runs its own
    `train_step` on every minibatch.
    """
    strategy = model.distribute_strategy
    if adapter.takes_loss_only_steps():
        return _loss_only_chunk_function(model, adapter)

    def step(chunk, i):
        return strategy.run(lambda c: model.train_step(tf.nest.map_structure(lambda t: t[i], c)), args=(chunk,))

    @tf.function(jit_compile=model.jit_compile, reduce_retracing=True)
    def train_chunk(chunk):
        size = tf.shape(tf.nest.flatten(strategy.experimental_local_results(chunk)[0])[0])[0]
        # The chunk's last step runs after the loop, not in it: with dropout, XLA ran a loop
        # holding every step of the chunk 13x slower (measured on the best preset's network).
        def loop_body(i):
            step(chunk, i)  # its variable updates are kept by tf.function's automatic control dependencies
            return (i + 1,)

        tf.while_loop(lambda i: i < size - 1, loop_body, (tf.constant(0),))
        logs = step(chunk, size - 1)
        if strategy.num_replicas_in_sync == 1:
            return logs
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    return lambda iterator: train_chunk(next(iterator))


def _loss_only_chunk_function(model: keras.Model, adapter: "_KerasAdapter"):
    """The train function of a loss-only model on one replica: losses summed in the loop, tracked once."""

    @tf.function(jit_compile=model.jit_compile, reduce_retracing=True)
    def train_chunk(chunk):
        size = tf.shape(chunk[0])[0]
        minibatch = lambda i: tuple(t[i] for t in chunk)  # noqa: E731

        def loop_body(i, loss_sum):
            return i + 1, loss_sum + adapter.loss_step(minibatch(i))

        # As above, the chunk's last step runs after the loop.
        _, loss_sum = tf.while_loop(lambda i, _: i < size - 1, loop_body, (tf.constant(0), tf.constant(0.0)))
        loss_sum += adapter.loss_step(minibatch(size - 1))
        return adapter.track_mean_loss(loss_sum / tf.cast(size, loss_sum.dtype), steps=size,
                                       batch_size=tf.shape(chunk[0])[1])

    return lambda iterator: train_chunk(next(iterator))


def learning_rate_setting(optimizer: keras.optimizers.Optimizer):
    """The learning rate as the optimizer was given it: its schedule, or the variable holding the rate.

    `optimizer.learning_rate` returns a schedule's current value instead, and
    Keras has no public getter for the schedule itself.
    """
    return optimizer._learning_rate


class _KerasAdapter:
    """The Keras internals `fit` relies on, in one place, with a check of the Keras version.

    Args:
        model: the compiled model to train.
    """

    def __init__(self, model: keras.Model):
        if not keras.__version__.startswith(TESTED_KERAS + "."):
            warnings.warn(f"keras_makemore.engine was tested with Keras {TESTED_KERAS}.x and found Keras "
                          f"{keras.__version__}: if training fails or differs from model.fit, pin "
                          f"keras=={TESTED_KERAS}.*", stacklevel=3)
        for name in ("make_train_function", "_symbolic_build", "_maybe_symbolic_build", "train_function"):
            if not hasattr(model, name):
                raise RuntimeError(f"Keras {keras.__version__} has no Model.{name}, which keras_makemore.engine "
                                   f"needs: install keras=={TESTED_KERAS}.*")
        self.model = model

    def build(self, minibatch_spec) -> None:
        """Build model, loss, metrics and optimizer for one minibatch.

        `fit` would build them on the first element of its dataset, which is
        a whole chunk here.
        """
        with self.model.distribute_strategy.scope():
            self.model._symbolic_build(data_batch=minibatch_spec)

    def takes_loss_only_steps(self) -> bool:
        """Whether the model trains with Keras' own `train_step`, tracks only its loss, on one replica."""
        from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

        model = self.model
        return (type(model).train_step is TensorFlowTrainer.train_step and model.metrics == [model._loss_tracker]
                and model.distribute_strategy.num_replicas_in_sync == 1)

    def loss_step(self, data) -> tf.Tensor:
        """Keras' `train_step` on one minibatch without its metric updates; returns the minibatch's loss."""
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled_loss = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, model.trainable_weights)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        return tf.cast(loss, tf.float32)

    def track_mean_loss(self, mean_loss: tf.Tensor, steps: tf.Tensor, batch_size: tf.Tensor) -> dict:
        """Record `steps` minibatches' mean loss as Keras records each step's, weighted by its batch size."""
        self.model._loss_tracker.update_state(mean_loss, sample_weight=steps * batch_size)
        return {"loss": self.model._loss_tracker.result()}

    @contextlib.contextmanager
    def train_function(self, function) -> Iterator[None]:
        """Make `fit` call `function(iterator)` once per `steps_per_execution` steps; undo it afterwards."""
        model = self.model

        def make_train_function(force=False):
            model.train_function = function
            return function

        model.make_train_function = make_train_function
        # `build` has built everything; under a strategy `fit` would build again from the mean of its
        # first element over the replicas, which MultiWorkerMirroredStrategy cannot take of a tuple.
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
        try:
            yield
        finally:
            del model.make_train_function, model._maybe_symbolic_build
            model.train_function = None  # the next plain `fit` makes its own
