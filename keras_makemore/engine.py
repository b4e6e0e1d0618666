"""Train any compiled Keras model many minibatches per call: one compiled loop inside `model.fit`.

Plain `model.fit` on a `tf.data.Dataset` runs one minibatch per graph call
(or, with `steps_per_execution`, pulls each minibatch from the input pipeline
inside a loop that XLA cannot compile). For a small network the per-step
overhead dominates: the lecture MLP trains at about 500 steps/s that way.
`fit` here groups `steps_per_execution` consecutive minibatches of the
dataset into one element (`dataset.batch(steps_per_execution)`), and runs the
model's own `train_step` over them in one `tf.while_loop`. Everything else is
`model.fit`: callbacks, History, `BackupAndRestore`, the progress bar,
validation and `tf.distribute` work as usual, and the model is trained on
exactly the minibatches, in exactly the order, that plain `fit` would use.
Batch-level callbacks fire once per chunk, as they do in plain `fit` with the
same `steps_per_execution`.

The train function follows Keras' own lifecycle: it is made once per compile
and remade by `model.compile()` and `make_train_function(force=True)` (which
the learning-rate finder calls when it swaps a schedule); it is kept on the
model, so it goes when the model goes. `compile(run_eagerly=True)` runs every
step eagerly.

The Keras internals this needs are touched only by `_KerasAdapter` below,
which checks each of them against the supported Keras range (`setup.cfg`),
and by `learning_rate_setting`, which the learning-rate finder uses.
"""

import configparser
import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import warnings
from pathlib import Path
from typing import Callable, Iterator

import keras
import tensorflow as tf
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

XLA_SCOPES = ("auto", "loop", "step")
_UNSUPPORTED_FIT_ARGS = ("y", "batch_size", "sample_weight", "class_weight", "validation_split")
_TRAIN_FUNCTION_ATTRIBUTE = "_keras_makemore_train_function"
# Measured with benchmarks/engine_models.py: XLA compiling the whole loop of a model with these layers ran it
# 2-14x slower than plain fit on CPU, so `xla="auto"` compiles each step instead, as plain fit does. Without XLA
# too, their step is a function of its own, called once per minibatch as in plain fit: inlined in the loop, the
# MNIST convnet ran at 0.78x and the Conv1D text model at 0.84x plain fit (TF's graph optimizations do not reach
# into the loop's body); called, at 0.99x and 1.0x.
_STEP_XLA_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
                    "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D", "RNN")


def fit(model: keras.Model, dataset: tf.data.Dataset, *, xla: str = "auto", **fit_args) -> keras.callbacks.History:
    """`model.fit(dataset, **fit_args)`, running `model.steps_per_execution` minibatches per compiled call.

    Args:
        model: a compiled Keras model. Its `steps_per_execution` (from
            `compile`) is the number of minibatches per call, its
            `jit_compile` whether XLA compiles them, its `run_eagerly`
            whether they run eagerly instead.
        dataset: a `tf.data.Dataset` of minibatches as `model.fit` takes
            them (`(x, y)`, `(x, y, sample_weight)`, or `x` alone for a model
            with its own `train_step`), all of one size (batch with
            `drop_remainder=True`). A finite dataset is one epoch, as in
            `model.fit`; a repeated one needs `steps_per_epoch`.
        xla: what XLA compiles when the model's `jit_compile` is on:
            `"loop"` the whole loop over a chunk's minibatches, `"step"`
            each training step (as plain `fit` does) inside an uncompiled
            loop, `"auto"` each step for a model with convolutional or
            recurrent layers (XLA runs those slower in a compiled loop on
            CPU) and the whole loop for any other.
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
    _check_arguments(model, dataset, xla, fit_args)
    adapter = _KerasAdapter(model)
    chunks = _chunks(dataset, model.steps_per_execution, model.distribute_strategy)
    adapter.build(dataset.element_spec)
    with adapter.train_function(lambda force: _train_function(model, adapter, xla, force)):
        # `shuffle` does nothing to a dataset in plain fit either: the pipeline shuffles.
        return model.fit(chunks, **{"shuffle": False, **fit_args})


def _check_arguments(model: keras.Model, dataset, xla: str, fit_args: dict) -> None:
    if not getattr(model, "compiled", False):
        raise ValueError(f"model must be compiled with an optimizer and a loss before training, got model "
                         f"{model.name!r} uncompiled: call model.compile(optimizer=..., loss=...) first")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset of (x, y) minibatches, got {type(dataset).__name__}: "
                         "e.g. tf.data.Dataset.from_tensor_slices((x, y)).batch(32, drop_remainder=True)")
    if xla not in XLA_SCOPES:
        raise ValueError(f"xla must be one of {', '.join(XLA_SCOPES)}, got {xla!r}")
    spec = dataset.element_spec
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

    Keras counts an epoch of a finite dataset in elements; on one replica the
    chunked dataset claims the cardinality of the minibatches, so `fit` counts
    steps (it calls the train function once per `chunk_size` of them and never
    reads past the last chunk). A distributed iterator reads ahead, so under a
    strategy the epoch ends where the data does, as for a dataset of unknown
    length in plain `fit`.
    """
    minibatches = int(dataset.cardinality())
    chunks = dataset.batch(chunk_size)
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        if minibatches >= 0:
            chunks = chunks.apply(tf.data.experimental.assert_cardinality(minibatches))
        return chunks.prefetch(2)

    def replica_shares(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # Each local replica dequeues one element in turn: emit every chunk once per local replica,
        # sliced to that replica's share of each minibatch, so the replicas together train on
        # exactly the minibatches one device would.
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def shares(*element):
            chunk = element if len(element) > 1 else element[0]

            def share(replica):
                replica = tf.cast(replica, tf.int32)
                size = tf.shape(tf.nest.flatten(chunk)[0])[1] // replicas
                return tf.nest.map_structure(lambda t: t[:, replica * size:(replica + 1) * size], chunk)
            return tf.data.Dataset.range(first, first + local).map(share)

        return chunks.flat_map(shares).prefetch(2)

    return strategy.distribute_datasets_from_function(replica_shares)


class _TrainFunction:
    """A train function and the compile it was made for, kept on the model.

    Keeping it on the model (not in a module-level cache) means the function,
    which refers to the model, goes with it.
    """

    def __init__(self, key: tuple, function: Callable):
        self.key, self.function = key, function


def _train_function(model: keras.Model, adapter: "_KerasAdapter", xla: str, force: bool):
    """The model's train function, made once per compile as Keras makes its own, or anew when forced.

    `compile()` makes a new loss tracker, so the tracker stands for the
    compile; a new optimizer, learning-rate schedule, XLA or eager setting
    makes a new function too.
    """
    key = adapter.compile_key(), (model.run_eagerly, _xla_scope(model, xla))
    made = getattr(model, _TRAIN_FUNCTION_ATTRIBUTE, None)
    if force or made is None or any(a is not b for a, b in zip(made.key[0], key[0])) or made.key[1] != key[1]:
        made = _TrainFunction(key, _make_train_function(model, adapter, key[1][1]))
        setattr(model, _TRAIN_FUNCTION_ATTRIBUTE, made)
    return made.function


def _xla_scope(model: keras.Model, xla: str) -> str | None:
    """What XLA compiles for this model: `"loop"`, `"step"`, or None (no XLA)."""
    if not model.jit_compile or model.run_eagerly:
        return None
    if xla != "auto":
        return xla
    return "step" if _has_step_layers(model) else "loop"


def _has_step_layers(model: keras.Model) -> bool:
    """Whether the model has a layer (convolutional, recurrent) that runs slower inlined in a loop than called per step."""
    step_layers = tuple(getattr(keras.layers, name) for name in _STEP_XLA_LAYERS)
    return any(isinstance(layer, step_layers) for layer in model._flatten_layers())


def _make_train_function(model: keras.Model, adapter: "_KerasAdapter", xla_scope: str | None):
    """The train function: one training step per minibatch of a chunk, all in one call.

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
    eager = model.run_eagerly
    loss_only = not eager and adapter.takes_loss_only_steps()
    step = adapter.loss_step if loss_only else model.train_step
    # Keras traces its train function without AutoGraph (`do_not_convert`), so a step's Python runs as written
    # in both; converting the engine's own functions cost 0.7 s of the lecture MLP's first chunk.
    if xla_scope == "step":
        step = tf.function(step, jit_compile=True, reduce_retracing=True, autograph=False)
    elif xla_scope is None and not eager and _has_step_layers(model):
        step = tf.function(step, reduce_retracing=True, autograph=False)

    def run_step(chunk, i):
        return strategy.run(lambda c: step(tf.nest.map_structure(lambda t: t[i], c)), args=(chunk,))

    def size_of(chunk):
        return tf.shape(tf.nest.flatten(strategy.experimental_local_results(chunk)[0])[0])[0]

    def reduce(logs):
        if strategy.num_replicas_in_sync == 1:
            return logs
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    if eager:
        def train_chunk_eagerly(chunk):
            for i in range(int(size_of(chunk))):
                logs = run_step(chunk, i)
            return reduce(logs)

        return lambda iterator: train_chunk_eagerly(next(iterator))

    @tf.function(jit_compile=xla_scope == "loop", reduce_retracing=True, autograph=False)
    def train_chunk(chunk):
        size = size_of(chunk)
        # The chunk's last step runs after the loop, not in it: with dropout, XLA ran a loop
        # holding every step of the chunk 13x slower (measured on the best preset's network).
        if loss_only:
            def loop_body(i, loss_sum):
                return i + 1, loss_sum + run_step(chunk, i)

            _, loss_sum = tf.while_loop(lambda i, _: i < size - 1, loop_body, (tf.constant(0), tf.constant(0.0)))
            loss_sum += run_step(chunk, size - 1)
            return adapter.track_mean_loss(loss_sum / tf.cast(size, loss_sum.dtype), steps=size,
                                           batch_size=tf.shape(tf.nest.flatten(chunk)[0])[1])

        def loop_body(i):
            run_step(chunk, i)  # its variable updates are kept by tf.function's automatic control dependencies
            return (i + 1,)

        tf.while_loop(lambda i: i < size - 1, loop_body, (tf.constant(0),))
        return reduce(run_step(chunk, size - 1))

    return lambda iterator: train_chunk(next(iterator))


def learning_rate_setting(optimizer: keras.optimizers.Optimizer):
    """The learning rate as the optimizer was given it: its schedule, or the variable holding the rate.

    `optimizer.learning_rate` returns a schedule's current value instead, and
    Keras has no public getter for the schedule itself.
    """
    return optimizer._learning_rate


@functools.cache
def supported_keras() -> str:
    """The Keras versions keras-makemore supports, as its package metadata states them (e.g. `">=3.12,<4"`).

    Read from the installed distribution's requirements, or from `setup.cfg`
    when running from a source tree.
    """
    try:
        requirements = importlib.metadata.requires("keras-makemore") or []
    except importlib.metadata.PackageNotFoundError:
        setup_cfg = configparser.ConfigParser()
        setup_cfg.read(Path(__file__).resolve().parent.parent / "setup.cfg")
        requirements = setup_cfg.get("options", "install_requires", fallback="").split("\n")
    for line in filter(str.strip, requirements):
        requirement = Requirement(line)
        if requirement.name == "keras" and requirement.marker is None:
            return str(requirement.specifier)
    raise RuntimeError("keras-makemore's requirements name no keras version range: reinstall keras-makemore")


# Every Keras internal the engine uses: (where, name, what for). `_KerasAdapter.check` finds each of them.
_INTERNALS = (
    ("model", "make_train_function", "fit calls it for the train function the engine gives it"),
    ("model", "train_function", "where fit keeps the train function"),
    ("model", "_symbolic_build", "builds model, loss, metrics and optimizer for one minibatch, not a chunk"),
    ("model", "_maybe_symbolic_build", "fit's own build, on a whole chunk, which the engine skips"),
    ("model", "_loss_tracker", "the loss metric: the loss-only loop records a chunk's mean loss in it; "
                               "a new one stands for a new compile"),
    ("model", "_compute_loss", "the loss-only step computes the loss as train_step does"),
    ("model", "_call_has_training_arg", "the loss-only step calls the model as train_step does"),
    ("model", "_flatten_layers", "the layers that choose what XLA compiles"),
    ("optimizer", "_learning_rate", "the schedule or variable given as learning rate (learning_rate_setting)"),
    ("keras.src.backend.tensorflow.trainer", "TensorFlowTrainer",
     "its train_step, which the loss-only step reproduces"),
)
# sha256 of `TensorFlowTrainer.train_step`'s source, the same from Keras 3.12.0 to 3.15.1: `loss_step` is
# this step without its per-step metric updates. Another source means Keras changed it: the engine then
# runs Keras' train_step itself.
_KNOWN_TRAIN_STEP = "debf0efab9d5794b017ade2937acbcc51886fc1dc5cf021e7d7e80f974ee707c"


def _keras_train_step():
    """Keras' own `Model.train_step` on the TensorFlow backend."""
    module, name, _ = _INTERNALS[-1]
    return getattr(importlib.import_module(module), name).train_step


class _KerasAdapter:
    """The Keras internals `fit` relies on, in one place, each checked (see `_INTERNALS`).

    Args:
        model: the compiled model to train.
    """

    _checked: set = set()  # Keras versions checked in this process
    _warned: set = set()  # warnings given in this process

    def __init__(self, model: keras.Model):
        self.model = model
        self.check(model)

    @classmethod
    def check(cls, model: keras.Model) -> None:
        """Raise a `RuntimeError` naming any internal this Keras lacks; warn once outside the supported range."""
        supported = supported_keras()
        if keras.__version__ not in SpecifierSet(supported):
            cls._warn_once(f"keras_makemore.engine supports keras{supported} and found Keras {keras.__version__}: "
                           f"if training fails or differs from model.fit, pip install 'keras{supported}'")
        owners = {"model": model, "optimizer": model.optimizer}
        for where, name, purpose in _INTERNALS:
            if where not in owners:
                with contextlib.suppress(ImportError, AttributeError):
                    _keras_train_step()
                    continue
            elif owners[where] is None or hasattr(owners[where], name):  # a custom train_step may need no optimizer
                continue
            raise RuntimeError(f"Keras {keras.__version__} has no {name} ({purpose}), which keras_makemore.engine "
                               f"needs: pip install 'keras{supported}'")

    @classmethod
    def _warn_once(cls, message: str) -> None:
        if message not in cls._warned:
            cls._warned.add(message)
            warnings.warn(message, stacklevel=4)

    def compile_key(self) -> tuple:
        """The objects a train function is made for: the compile (its loss tracker), optimizer, schedule."""
        model = self.model
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        return model._loss_tracker, model.optimizer, optimizer and learning_rate_setting(optimizer)

    def build(self, minibatch_spec) -> None:
        """Build model, loss, metrics and optimizer for one minibatch, where Keras can build them so.

        `fit` would build them on the first element of its dataset, which is
        a whole chunk here. A model with its own `train_step` and no `call`
        (a GAN) builds its parts itself.
        """
        model = self.model
        with model.distribute_strategy.scope():
            try:
                model._symbolic_build(data_batch=minibatch_spec)
            except (RuntimeError, NotImplementedError):
                if type(model).train_step is _keras_train_step():
                    raise

    def takes_loss_only_steps(self) -> bool:
        """Whether the model trains with Keras' own `train_step`, tracks only its loss, on one replica."""
        model = self.model
        if not (type(model).train_step is _keras_train_step() and model.metrics == [model._loss_tracker]
                and model.distribute_strategy.num_replicas_in_sync == 1):
            return False
        source = hashlib.sha256(inspect.getsource(_keras_train_step()).encode()).hexdigest()
        if source != _KNOWN_TRAIN_STEP:
            self._warn_once(f"Keras {keras.__version__} changed Model.train_step: keras_makemore.engine runs it "
                            "as is, without its faster loss-only loop")
            return False
        return True

    def loss_step(self, data) -> tf.Tensor:
        """Keras' `train_step` on one minibatch without its metric updates; returns the minibatch's loss."""
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled_loss = model.optimizer.scale_loss(loss)
        if model.trainable_weights:
            gradients = tape.gradient(scaled_loss, model.trainable_weights)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_weights))
        return tf.cast(loss, tf.float32)

    def track_mean_loss(self, mean_loss: tf.Tensor, steps: tf.Tensor, batch_size: tf.Tensor) -> dict:
        """Record `steps` minibatches' mean loss as Keras records each step's, weighted by its batch size."""
        self.model._loss_tracker.update_state(mean_loss, sample_weight=steps * batch_size)
        return {"loss": self.model._loss_tracker.result()}

    @contextlib.contextmanager
    def train_function(self, make: Callable[[bool], Callable]) -> Iterator[None]:
        """Make `fit` call `make(force)(iterator)` once per `steps_per_execution` steps; undo it afterwards."""
        model = self.model

        def make_train_function(force=False):
            model.train_function = make(force)
            return model.train_function

        model.make_train_function = make_train_function
        # `build` has built everything; under a strategy `fit` would build again from the mean of its
        # first element over the replicas, which MultiWorkerMirroredStrategy cannot take of a tuple.
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
        try:
            yield
        finally:
            del model.make_train_function, model._maybe_symbolic_build
            model.train_function = None  # the next plain `fit` makes its own
