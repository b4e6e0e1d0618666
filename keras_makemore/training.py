"""Train the MLP with `model.fit` into a run directory that later commands read.

Minibatches are drawn the way the lecture draws them, `ix = randint(0, n, (batch,))`,
but inside the TensorFlow graph: the training examples live in memory as
tensors and the indices of step `t` come from a stateless generator seeded with
`(seed, t)`. This keeps `model.fit` (History, callbacks, checkpoints) while
skipping tf.data's per-batch work, and it makes training resumable exactly: the
step counter is part of the optimizer state that `BackupAndRestore` restores, so
a resumed run draws the very minibatches the uninterrupted run would have.
"""

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import _atomic
from keras_makemore.callbacks import (AtomicCSVLogger, BestModelCheckpoint, SampleWords, StopOnNonFiniteLoss,
                                      read_csv_rows, tensorboard_callbacks)
from keras_makemore.data import Corpus, load_names, make_dataset, read_words
from keras_makemore.distribute import STRATEGIES, is_chief, make_strategy, worker_dir
from keras_makemore.errors import UserError
from keras_makemore.evaluation import mean_nll
from keras_makemore.lr_finder import LRFinderResult, find_lr
from keras_makemore.model import build_model

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
MODEL_FILE = "model.keras"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"

OPTIMIZERS = ("sgd", "adam", "adamw")
MAX_PARAMETERS = 200_000_000  # 0.75 GiB of weights; Adam's state triples it
LR_SCHEDULES = ("constant", "step", "cosine")
XLA_MODES = ("auto", "on", "off")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `config.json` in the run directory.

    Args:
        data: path of the word list; `None` trains on makemore's names.txt.
        block_size: characters of context.
        embed_dim: embedding size per character.
        hidden_units: width of the tanh layer.
        batch_size: examples per minibatch.
        steps: optimizer steps in all.
        epochs: if set, train this many passes' worth of steps over the
            training words instead of `steps` (a pass is `n_train / batch_size`
            steps, rounded to a multiple of 100).
        optimizer: `"sgd"` (the lecture's), `"adam"` or `"adamw"`.
        lr: initial learning rate.
        lr_schedule: `"step"` divides the rate by 10 half-way (the lecture's
            0.1 then 0.01), `"cosine"` decays it to 1% along a cosine,
            `"constant"` keeps it.
        lr_drops: explicit `(step, rate)` pairs, e.g. `[(100000, 0.01)]`; when
            given they replace `lr_schedule`.
        seed: seed of the initial weights and the minibatches.
        split_seed: seed of the train/val/test shuffle (42 gives the lecture's split).
        eval_every: steps between validation passes (Keras epochs).
        dropout: dropout rate on the hidden layer.
        weight_decay: decoupled weight decay of the optimizer (0: none).
        direct_connections: Bengio's embedding-to-output connections.
        xla: `"on"` compiles each chunk of training steps with XLA, `"off"`
            does not, `"auto"` (default) uses XLA unless the model has dropout
            (measured: XLA doubles the speed of the plain MLP on CPU but slows
            a dropout model down many times).
        strategy: the `tf.distribute` strategy: `"default"` (one device),
            `"mirrored"` (all local GPUs, or logical CPUs) or `"multiworker"`
            (the cluster in `TF_CONFIG`). `batch_size` stays the global batch:
            each of the replicas trains on its share of it.
    """

    data: str | None = None
    block_size: int = 3
    embed_dim: int = 10
    hidden_units: int = 200
    batch_size: int = 32
    steps: int = 200_000
    epochs: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.1
    lr_schedule: str = "step"
    lr_drops: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    seed: int = 42
    split_seed: int = 42
    eval_every: int = 10_000
    dropout: float = 0.0
    weight_decay: float = 0.0
    direct_connections: bool = False
    xla: str = "auto"
    strategy: str = "default"

    def validate(self) -> None:
        for name in ("block_size", "embed_dim", "hidden_units", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value < 1:
                flag = "--" + name.replace("_", "-").replace("hidden-units", "hidden")
                raise UserError(f"{name} must be at least 1, got {value}: pass {flag} 1 or more")
        if self.block_size > 1024:
            raise UserError(f"block_size {self.block_size} is too large: use at most 1024 characters of context")
        if self.steps < 1 and self.epochs is None:
            raise UserError(f"steps must be at least 1, got {self.steps}: pass --steps 1 or more")
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"epochs must be at least 1, got {self.epochs}: pass --epochs 1 or more")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"unknown lr schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if self.xla not in XLA_MODES:
            raise UserError(f"unknown xla mode {self.xla!r}: choose one of {', '.join(XLA_MODES)}")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.weight_decay < 1:
            raise UserError(f"weight decay must be in [0, 1), got {self.weight_decay}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"learning rate must be a positive number, got {self.lr}")
        steps = [s for s, _ in self.lr_drops]
        if steps != sorted(set(steps)) or any(s < 1 for s in steps):
            raise UserError("--lr-drop steps must be positive and increasing, e.g. --lr-drop 100000:0.01")
        if not all(r > 0 and math.isfinite(r) for _, r in self.lr_drops):
            raise UserError("--lr-drop rates must be positive numbers, e.g. --lr-drop 100000:0.01")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        """The named preset's settings (see `PRESETS`), with `overrides` on top."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**(PRESETS[name] | overrides))

    @classmethod
    def from_json(cls, obj: dict) -> "TrainConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in obj.items() if k in fields})
        config.lr_drops = [tuple(p) for p in config.lr_drops]
        return config


# Named settings for `TrainConfig.from_preset` and `keras-makemore train --preset`.
PRESETS: dict[str, dict] = {
    # The lecture's network (block 3, embedding 10, hidden 200) with a faster
    # recipe than the lecture's batch-32 step schedule (which is
    # `--batch-size 32 --steps 200000 --lr 0.1 --lr-drop 100000:0.01`):
    # batch 128 and a cosine decay reach a lower val loss in less time.
    "lecture": dict(block_size=3, embed_dim=10, hidden_units=200, batch_size=128, steps=150_000,
                    optimizer="sgd", lr=0.2, lr_schedule="cosine"),
    # A flat MLP tuned on the val split: 8 characters of context, a wider
    # embedding and hidden layer, dropout and decoupled weight decay, sized to
    # train in under 10 minutes on 2 cores (validating every 19,000 steps).
    # XLA on: measured 1.07x for this dropout model.
    "best": dict(block_size=8, embed_dim=32, hidden_units=768, dropout=0.1, batch_size=256, steps=95_000,
                 eval_every=19_000, optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.05, xla="on"),
}


def make_lr_schedule(config: TrainConfig, total_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate as a function of the optimizer step, per `config`."""
    # PiecewiseConstantDecay switches *after* a boundary, and step i runs with
    # iterations == i, so "rate r from step s on" is the boundary s - 1.
    if config.lr_drops:
        boundaries = [int(s) - 1 for s, _ in config.lr_drops]
        values = [float(config.lr)] + [float(r) for _, r in config.lr_drops]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.lr_schedule == "step" and total_steps >= 2:
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [total_steps // 2 - 1], [float(config.lr), float(config.lr) / 10]
        )
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(float(config.lr), total_steps, alpha=0.01)
    return float(config.lr)


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    lr = make_lr_schedule(config, total_steps)
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, weight_decay=decay)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=decay)
    return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)


def plan_steps(config: TrainConfig, num_train_examples: int) -> tuple[int, int, int, int]:
    """Split the run into Keras epochs: `(total_steps, epochs, steps_per_epoch, steps_per_execution)`.

    Each Keras epoch ends with a validation pass, a CSV row, a checkpoint and a
    few samples. The steps of one epoch run in chunks of `steps_per_execution`
    inside one graph call, which must divide the epoch exactly.
    """
    if config.epochs is not None:
        per_pass = max(100, round(num_train_examples / config.batch_size / 100) * 100)
        total, eval_every = config.epochs * per_pass, per_pass
    else:
        total, eval_every = config.steps, config.eval_every
    epochs = max(1, math.ceil(total / eval_every))
    while total % epochs:
        epochs += 1
    if epochs > 2 * math.ceil(total / eval_every):  # awkward totals, e.g. primes
        epochs = math.ceil(total / eval_every)
        total = math.ceil(total / epochs) * epochs
    steps_per_epoch = total // epochs
    steps_per_execution = max(d for d in range(1, min(1000, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return total, epochs, steps_per_epoch, steps_per_execution


class _RandomMinibatchTrainer(keras.Model):
    """Wraps a model so that each `fit` step draws its own minibatch from in-memory examples.

    Because no step reads the input pipeline, a whole chunk of
    `steps_per_execution` steps runs as one graph loop, optionally compiled by
    XLA as a unit (Keras' own `jit_compile` compiles one step at a time).

    Under a `tf.distribute` strategy (the one whose scope the wrapper is built
    in) every replica draws the same `batch_size` indices and trains on its own
    slice of them, so the replicas together train on exactly the minibatch one
    device would; Keras all-reduces the gradients.
    """

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int,
                 xla: bool = False):
        super().__init__(name="trainer")
        self.network = model
        self._x = tf.constant(x)
        self._y = tf.constant(y)
        self._batch_size = batch_size
        self._seed = seed
        self._xla = xla

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        """One SGD step on a minibatch drawn here; returns the step's loss, not logs.

        Under a strategy with several replicas each returns its loss divided
        by their number, as Keras scales it for summing gradients, so the sum
        over replicas is the minibatch's loss.

        `make_train_function` sums the losses of a chunk and records their
        mean in the loss tracker once: updating the tracker's variables on
        every step, as Keras' own `train_step` does, costs a quarter of the
        step's time inside the XLA-compiled loop. Only the loss is tracked;
        the wrapper is compiled without metrics.
        """
        del data  # a placeholder: the minibatch is drawn here
        x, y = self._draw_minibatch()
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return loss

    def _draw_minibatch(self) -> tuple[tf.Tensor, tf.Tensor]:
        step = tf.cast(self.optimizer.iterations, tf.int32)
        index = tf.random.stateless_uniform(
            [self._batch_size], seed=tf.stack([tf.constant(self._seed, tf.int32), step]),
            maxval=tf.shape(self._x)[0], dtype=tf.int32,
        )
        replicas = self.distribute_strategy.num_replicas_in_sync
        if replicas > 1:
            share = self._batch_size // replicas
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            index = index[replica * share:(replica + 1) * share]
        return tf.gather(self._x, index), tf.gather(self._y, index)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy  # the default strategy's `run` just calls the step

        def one_step(step, loss_sum):
            loss = strategy.run(self.train_step, args=(None,))  # its variable updates are kept by tf.function
            return step + 1, loss_sum + strategy.reduce("SUM", loss, axis=None)

        @tf.function(jit_compile=self._xla)
        def run_steps():
            # An explicit while_loop rather than a Python loop that AutoGraph
            # would have to convert: it holds even where the source is unreadable.
            # The chunk's last step runs after the loop, not in it: with dropout,
            # XLA ran a loop holding every step of the chunk 13x slower (measured).
            _, loss_sum = tf.while_loop(lambda step, _: step < self.steps_per_execution - 1, one_step,
                                        (tf.constant(0), tf.constant(0.0)))
            _, loss_sum = one_step(0, loss_sum)
            # As Keras weighs each step's loss by its batch size, so that the
            # epoch's figure is the mean over all its steps.
            self._loss_tracker.update_state(loss_sum / self.steps_per_execution,
                                            sample_weight=self.steps_per_execution * self._batch_size)
            return {"loss": self._loss_tracker.result()}

        self.train_function = lambda iterator: run_steps()
        return self.train_function


def _placeholder_batches(replicas: int = 1, block_size: int = 1) -> tf.data.Dataset:
    """Batches for `fit` to iterate over, which `train_step` ignores.

    They are shaped like real inputs, one example per replica, because Keras
    builds a model fitted under a strategy on the first batch, averaged over
    the replicas (a single tensor: `MultiWorkerMirroredStrategy.reduce` does
    not take a tuple).
    """
    return _unsharded(tf.data.Dataset.from_tensors(tf.zeros([replicas, block_size])).repeat())


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    model: keras.Model
    corpus: Corpus
    history: dict[str, list[float]]
    config: TrainConfig
    chief: bool = True  # False on the workers of a cluster that do not write the run


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    num_samples: int = 5,
    resume: bool = False,
    tensorboard: bool = False,
) -> TrainResult:
    """Train a model per `config` and save everything into `run_dir`.

    Args:
        config: the run's hyperparameters and data.
        run_dir: where model, vocabulary, config and history go; created if needed.
        callbacks: extra Keras callbacks for `model.fit`.
        verbose: Keras' progress display (`"auto"`, 0, 1 or 2).
        num_samples: words printed at the end of each epoch (0 for none).
        resume: continue the interrupted run in `run_dir` (its own config is
            used; `config` is ignored).
        tensorboard: also log losses, learning rate and the embedding
            projector into `run_dir/tensorboard` (needs the tensorboard package).

    Returns:
        A `TrainResult` with the best-validation model and the history. On a
        worker other than the chief (`config.strategy == "multiworker"`),
        nothing is written into `run_dir`, and the result holds the last
        weights and this session's history.
    """
    run_dir = Path(run_dir)
    if resume:
        config = _load_config_for_resume(run_dir)
    config.validate()
    if resume and config.strategy == "multiworker":
        raise UserError("a multi-worker run cannot be resumed: its workers' checkpoints are not kept; "
                        "train again into a new --out")
    strategy = make_strategy(config.strategy)  # first: a cluster must be set up before other TF work
    chief = is_chief(strategy)
    if not resume and chief:
        _check_new_run_dir(run_dir)
    _check_replicas(config, strategy.num_replicas_in_sync)
    data_path = Path(config.data) if config.data else load_names()
    corpus = Corpus(read_words(data_path), config.block_size, seed=config.split_seed)
    _check_model_size(config, corpus.vocab.size)
    total, _, _, steps_per_execution = plan_steps(config, len(corpus.examples("train")[0]))
    tb_callbacks = tensorboard_callbacks(run_dir / TENSORBOARD_DIR, corpus.vocab) if tensorboard and chief else []

    if not resume and chief:
        _prepare_run_dir(run_dir)
        corpus.vocab.save(run_dir / VOCAB_FILE)
        saved = config.to_json() | {
            "data": str(data_path.resolve()),
            "data_sha256": file_sha256(data_path),
            "vocab_size": corpus.vocab.size,
            "max_word_length": max(map(len, corpus.words)),
            "total_steps": total,
        }
        _atomic.write_json(run_dir / CONFIG_FILE, saved)

    trainer = _make_trainer(config, corpus, total, steps_per_execution, strategy)
    with worker_dir(run_dir, chief) as out_dir:
        return _fit(trainer, config, corpus, run_dir, out_dir, chief, [*callbacks, *tb_callbacks], verbose,
                    num_samples, resume)


def _fit(trainer, config, corpus, run_dir, out_dir, chief, callbacks, verbose, num_samples, resume) -> TrainResult:
    """`train`'s fit; the chief writes into `run_dir`, other workers' checkpoints go to `out_dir`."""
    model = trainer.network
    x_train, _ = corpus.examples("train")
    x_val, y_val = corpus.examples("val")
    total, epochs, steps_per_epoch, _ = plan_steps(config, len(x_train))
    stop_on_nan = StopOnNonFiniteLoss()
    # Keras' evaluate under MultiWorkerMirroredStrategy fails on (x, y) batches (its strategy.reduce of
    # the first batch takes no tuple), so each worker validates its own copy of the synchronised weights.
    multiworker = config.strategy == "multiworker"
    all_callbacks = [
        *([_LocalValidation(model, x_val, y_val)] if multiworker else []),
        keras.callbacks.BackupAndRestore(str(out_dir / BACKUP_DIR), double_checkpoint=True),
        stop_on_nan,
    ]
    if chief:
        all_callbacks += [
            BestModelCheckpoint(run_dir / MODEL_FILE, model, initial_best=_best_val_loss(run_dir)),
            AtomicCSVLogger(run_dir / HISTORY_CSV),
        ]
    all_callbacks += callbacks
    verbose = verbose if chief else 0
    show_progress = verbose != 0
    if show_progress:
        # Listed before SampleWords so the epoch's last progress line is printed before the samples.
        all_callbacks.append(keras.callbacks.ProgbarLogger())
    if show_progress and num_samples:
        all_callbacks.append(SampleWords(corpus.vocab, config.block_size, num_samples, seed=config.seed))
    if show_progress and resume:
        print(f"resuming the run in {run_dir} from its last checkpoint")
    if show_progress:
        print(
            f"training {model.count_params():,} parameters on {len(x_train):,} examples "
            f"({len(corpus.split.train):,} words) for {total:,} steps of batch {config.batch_size}, "
            f"validating every {steps_per_epoch:,} steps"
        )
        replicas = trainer.distribute_strategy.num_replicas_in_sync
        if config.strategy != "default":
            print(f"strategy {config.strategy}: global batch {config.batch_size} = "
                  f"{config.batch_size // replicas} per replica x {replicas} replicas")
    started = time.perf_counter()
    fitted = trainer.fit(
        _placeholder_batches(trainer.distribute_strategy.num_replicas_in_sync, config.block_size),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=None if multiworker else _validation_batches(
            x_val, y_val, trainer.distribute_strategy.num_replicas_in_sync),
        callbacks=all_callbacks,
        shuffle=False,  # minibatches are drawn at random in train_step
        verbose=verbose,
    )
    elapsed = time.perf_counter() - started
    if stop_on_nan.bad_step is not None:
        raise UserError(
            f"training diverged: the loss became {stop_on_nan.bad_loss} near step {stop_on_nan.bad_step:,}; "
            f"lower the learning rate (--lr, now {config.lr}) and train again into a new --out"
        )
    if not chief:
        return TrainResult(run_dir, model, corpus, fitted.history, config, chief=False)
    history = _read_history(run_dir)
    _atomic.write_json(run_dir / HISTORY_JSON, history | {"train_seconds_last_session": round(elapsed, 3)})
    best = keras.saving.load_model(run_dir / MODEL_FILE)
    return TrainResult(run_dir, best, corpus, history, config)


def _make_trainer(config: TrainConfig, corpus: Corpus, total: int, steps_per_execution: int,
                  strategy: tf.distribute.Strategy) -> _RandomMinibatchTrainer:
    """The freshly initialised model, wrapped and compiled under `strategy` as `train` runs it."""
    x_train, y_train = corpus.examples("train")
    replicas = strategy.num_replicas_in_sync
    xla = config.xla == "on" or (config.xla == "auto" and not config.dropout and replicas == 1)
    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        model = build_model(corpus.vocab.size, config.block_size, config.embed_dim, config.hidden_units,
                            dropout=config.dropout, direct_connections=config.direct_connections)
        trainer = _RandomMinibatchTrainer(model, x_train, y_train, config.batch_size, config.seed, xla=xla)
        trainer.compile(
            optimizer=make_optimizer(config, total),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            steps_per_execution=steps_per_execution,
            jit_compile=False,  # the training loop is compiled as a whole in make_train_function
        )
        trainer.build((None, config.block_size))
        # Keras builds the loss on the first batch of a fit under a strategy; `_placeholder_batches`
        # carry no targets, so build it here on a real example.
        trainer.compute_loss(y=y_train[:1], y_pred=trainer(x_train[:1]))
    return trainer


def _check_replicas(config: TrainConfig, replicas: int) -> None:
    if config.batch_size % replicas:
        raise UserError(f"batch size {config.batch_size} does not split evenly over {replicas} replicas: "
                        f"pass a --batch-size that is a multiple of {replicas}")
    if config.xla == "on" and replicas > 1:
        # Measured: XLA cannot compile a loop whose variables live on several devices.
        raise UserError(f"XLA compiles the training loop for one device, and strategy {config.strategy} runs "
                        f"{replicas} replicas: pass --xla auto or off")


class _LocalValidation(keras.callbacks.Callback):
    """Add `val_loss`, the mean NLL of `model` on `(x, y)`, to each epoch's logs."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self._network, self._x, self._y = model, x, y

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_loss"] = mean_nll(self._network, self._x, self._y)


def _validation_batches(x: np.ndarray, y: np.ndarray, replicas: int) -> tf.data.Dataset:
    """Batches of up to 4096 examples; the first splits evenly over the replicas, as Keras needs to build."""
    batch_size = max(replicas, min(4096, len(x)) // replicas * replicas)
    return _unsharded(make_dataset(x, y, batch_size=batch_size, shuffle=False))


def _unsharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Every worker reads the whole dataset (the validation set is small; sharding it could starve a worker)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def _check_new_run_dir(run_dir: Path) -> None:
    if (run_dir / BACKUP_DIR).exists():
        raise UserError(
            f"{run_dir} holds an interrupted run: continue it with `keras-makemore train --resume {run_dir}`, "
            "or choose another --out"
        )
    if (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} already holds a run: choose another --out")


def _prepare_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to run directory {run_dir}: {e.strerror}; choose another --out") from None


def _load_config_for_resume(run_dir: Path) -> TrainConfig:
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise UserError(f"{run_dir} holds no run to resume (no {CONFIG_FILE}): start one with `keras-makemore train --out {run_dir}`")
    if (run_dir / HISTORY_JSON).exists():
        raise UserError(f"the run in {run_dir} already finished: there is nothing to resume")
    try:
        return TrainConfig.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        raise UserError(f"{path} is corrupt: the run cannot be resumed; train again into a new --out") from None


def _check_model_size(config: TrainConfig, vocab_size: int) -> None:
    params = (vocab_size * config.embed_dim + config.block_size * config.embed_dim * config.hidden_units
              + config.hidden_units + config.hidden_units * vocab_size + vocab_size)
    if params > MAX_PARAMETERS:
        raise UserError(
            f"the model would have {params:,} parameters ({params * 4 / 2**30:.1f} GiB of float32 weights), "
            f"over the limit of {MAX_PARAMETERS:,}: lower --block-size, --embed-dim or --hidden"
        )


def _read_history(run_dir: Path) -> dict[str, list[float]]:
    """The history of all sessions of this run, from the CSV log (Keras' History holds only the last)."""
    rows = read_csv_rows(run_dir / HISTORY_CSV)
    history = {key: [float(r[key]) for r in rows] for key in (rows[0] if rows else {})}
    if rows:
        history["epoch"] = [int(e) for e in history["epoch"]]
    return history


def _best_val_loss(run_dir: Path) -> float:
    losses = [v for v in _read_history(run_dir).get("val_loss", []) if math.isfinite(v)]
    return min(losses, default=math.inf)


# --- Learning-rate finder on train()'s own setup (`train --lr auto`, `lr-find`) ---


def find_lr_for_config(config: TrainConfig, run_dir: str | os.PathLike | None = None, **finder_args) -> LRFinderResult:
    """Sweep the learning rate on exactly the model, data and optimizer `train(config)` starts with.

    `config.lr` and its schedule are ignored during the sweep. With `run_dir`
    (a new run directory), the sweep's `lr_find.png`, `.csv` and `.json` are
    written there.

    Args:
        config: the run's hyperparameters and data.
        run_dir: where to save the sweep; must not hold a run yet.
        **finder_args: `find_lr` arguments, e.g. `num_steps` or `suggest`.

    Returns:
        The `LRFinderResult`; train with `config.lr = result.learning_rate`.
    """
    if run_dir is not None:
        _check_new_run_dir(Path(run_dir))
    config.validate()
    if config.strategy == "multiworker":
        raise UserError("the learning-rate sweep runs on one host: run `keras-makemore lr-find` there "
                        "(--strategy default or mirrored), then train the cluster with --lr RATE")
    strategy = make_strategy(config.strategy)
    _check_replicas(config, strategy.num_replicas_in_sync)
    corpus = Corpus(read_words(Path(config.data) if config.data else load_names()), config.block_size,
                    seed=config.split_seed)
    total, *_ = plan_steps(config, len(corpus.examples("train")[0]))
    trainer = _make_trainer(config, corpus, total, 1, strategy)
    result = find_lr(trainer, _placeholder_batches(strategy.num_replicas_in_sync, config.block_size), **finder_args)
    if run_dir is not None:
        _prepare_run_dir(Path(run_dir))
        result.save(run_dir)
    return result
