"""`train()`: the recipe behind `keras-makemore train`, from a `TrainConfig` to a run directory.

Data -> model -> optimizer -> fit -> save. The minibatches are the lecture's,
`ix = randint(0, n, (batch,))` at every step, drawn by a `tf.data` pipeline
keyed on `(seed, step)` (`data.random_minibatches`); `engine.fit` runs up to
1,000 of them per compiled call inside `model.fit`. A resumed run restores the
last checkpoint first and starts the pipeline at the restored step, so it
trains on the very minibatches the uninterrupted run would have.
"""

import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import engine, rundir
from keras_makemore.callbacks import (AtomicCSVLogger, BestModelCheckpoint, EarlyStoppingOnValLoss, SampleWords,
                                      StopOnNonFiniteLoss, tensorboard_callbacks)
from keras_makemore.config import StepPlan, TrainConfig, check_model_size, plan_steps
from keras_makemore.data import Corpus, load_names, make_dataset, random_minibatches, read_words
from keras_makemore.distribute import is_chief, make_strategy, worker_dir
from keras_makemore.errors import UserError
from keras_makemore.evaluation import mean_nll
from keras_makemore.lr_finder import LRFinderResult, find_lr
from keras_makemore.model import build_model
from keras_makemore.optimizers import make_optimizer
from keras_makemore.runs import load_model


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Args:
        run_dir: the run directory.
        model: the best-validation model (on a non-chief worker: the last weights).
        corpus: the data, split as in training.
        history: the losses of every validation interval, all sessions of the run.
        config: the run's config.
        chief: False on the workers of a cluster that do not write the run.
    """

    run_dir: Path
    model: keras.Model
    corpus: Corpus
    history: dict[str, list[float]]
    config: TrainConfig
    chief: bool = True


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
        resume: continue the interrupted run in `run_dir` with its own config;
            `config` must then be `None` or equal to it.
        tensorboard: also log losses, learning rate and the embedding
            projector into `run_dir/tensorboard` (needs the tensorboard package).

    Returns:
        A `TrainResult`. On a worker other than the chief
        (`config.strategy == "multiworker"`), nothing is written into
        `run_dir`, and the result holds the last weights and this session's history.

    Example:

    ```python
    result = train(TrainConfig.from_preset("lecture", steps=20_000), "runs/first")
    print(result.history["val_loss"][-1])
    ```
    """
    run_dir = Path(run_dir)
    if num_samples < 0:
        raise UserError(f"num_samples must be 0 or more, got {num_samples}", argument="num_samples")
    config = _config_to_resume(run_dir, config) if resume else config
    config.validate()
    strategy = make_strategy(config.strategy)  # first: a cluster must be set up before other TF work
    chief = is_chief(strategy)
    if not resume and chief:
        _check_new_run_dir(run_dir)
    _check_replicas(config, strategy.num_replicas_in_sync)

    # Data
    data_path = Path(config.data) if config.data else load_names()
    corpus = Corpus(read_words(data_path), config.block_size, seed=config.split_seed)
    check_model_size(config, corpus.vocab.size)
    x_train, y_train = corpus.examples("train")
    plan = plan_steps(config, len(x_train))
    if not resume and chief:
        _start_run_dir(run_dir, config, corpus, data_path, plan)

    # Model and optimizer
    model = compiled_model(config, corpus.vocab.size, plan, strategy)

    # Fit
    with worker_dir(run_dir, chief) as out_dir:
        backup = keras.callbacks.BackupAndRestore(str(out_dir / rundir.BACKUP_DIR), double_checkpoint=True)
        first_step = _restore(model, backup) if resume else 0
        minibatches = random_minibatches(x_train, y_train, config.batch_size, config.seed, plan.total_steps, first_step)
        stop_on_nan = StopOnNonFiniteLoss()
        fit_callbacks = [backup, stop_on_nan, *_run_callbacks(config, corpus, run_dir, model, chief, verbose,
                                                             num_samples, tensorboard), *callbacks]
        if verbose != 0 and chief:
            _print_plan(config, corpus, model, plan, resume, run_dir)
        started = time.perf_counter()
        fitted = engine.fit(model, minibatches, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                            validation_data=_validation_data(config, corpus, strategy.num_replicas_in_sync),
                            callbacks=fit_callbacks, verbose=verbose if chief else 0)
        elapsed = time.perf_counter() - started

    # Save
    if stop_on_nan.bad_step is not None:
        raise UserError(f"lr {config.lr} made training diverge: the loss became {stop_on_nan.bad_loss} near step "
                        f"{stop_on_nan.bad_step:,}; lower it and train again into a new run_dir", argument="lr")
    if not chief:
        return TrainResult(run_dir, model, corpus, fitted.history, config, chief=False)
    history = rundir.read_history(run_dir)
    rundir.write_history(run_dir, history, elapsed)
    return TrainResult(run_dir, load_model(run_dir / rundir.MODEL_FILE), corpus, history, config)


def compiled_model(config: TrainConfig, vocab_size: int, plan: StepPlan,
                   strategy: tf.distribute.Strategy) -> keras.Model:
    """The freshly initialised network of `config`, compiled under `strategy` as `train` fits it."""
    xla = config.xla == "on" or (config.xla == "auto" and not config.dropout and strategy.num_replicas_in_sync == 1)
    with strategy.scope():
        model = build_model(vocab_size, config.block_size, config.embed_dim, config.hidden_units,
                            dropout=config.dropout, direct_connections=config.direct_connections, seed=config.seed)
        model.compile(optimizer=make_optimizer(config, plan.total_steps),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      steps_per_execution=plan.steps_per_execution, jit_compile=xla)
    return model


def _run_callbacks(config, corpus, run_dir, model, chief, verbose, num_samples, tensorboard) -> list:
    """Validation on a cluster; the chief's checkpoint, CSV log and TensorBoard; the progress bar and samples."""
    out = []
    # Keras' evaluate under MultiWorkerMirroredStrategy fails on (x, y) batches (its strategy.reduce of
    # the first batch takes no tuple), so each worker validates its own copy of the synchronised weights.
    if config.strategy == "multiworker":
        out.append(_LocalValidation(model, *corpus.examples("val")))
    if config.early_stop is not None:
        earlier = rundir.read_history(run_dir).get("val_loss", []) if chief else []
        saved = run_dir / rundir.MODEL_FILE
        best = load_model(saved).get_weights() if earlier and saved.exists() else None
        out.append(EarlyStoppingOnValLoss(config.early_stop, earlier, best))
    if chief:
        out += [BestModelCheckpoint(run_dir / rundir.MODEL_FILE, initial_best=rundir.best_val_loss(run_dir)),
                AtomicCSVLogger(run_dir / rundir.HISTORY_CSV)]
        if tensorboard:
            out += tensorboard_callbacks(run_dir / rundir.TENSORBOARD_DIR, corpus.vocab)
    if verbose != 0 and chief:
        # Listed before SampleWords so the epoch's last progress line is printed before the samples.
        out.append(keras.callbacks.ProgbarLogger())
        if num_samples:
            out.append(SampleWords(corpus.vocab, config.block_size, num_samples, seed=config.seed))
    return out


def _restore(model: keras.Model, backup: keras.callbacks.BackupAndRestore) -> int:
    """Load the last checkpoint now, before the minibatches are made; return the step it reached.

    `fit` restores it again as it starts (the same files), and resumes from its epoch.
    """
    backup.set_model(model)
    with model.distribute_strategy.scope():
        backup.on_train_begin()
    return int(model.optimizer.iterations.numpy())


def _print_plan(config, corpus, model, plan, resume, run_dir) -> None:
    if resume:
        print(f"resuming the run in {run_dir} from its last checkpoint")
    x_train = corpus.examples("train")[0]
    print(f"training {model.count_params():,} parameters on {len(x_train):,} examples "
          f"({len(corpus.split.train):,} words) for {plan.total_steps:,} steps of batch {config.batch_size}, "
          f"validating every {plan.steps_per_epoch:,} steps")
    replicas = model.distribute_strategy.num_replicas_in_sync
    if config.strategy != "default":
        print(f"strategy {config.strategy}: global batch {config.batch_size} = "
              f"{config.batch_size // replicas} per replica x {replicas} replicas")


def _check_replicas(config: TrainConfig, replicas: int) -> None:
    if config.batch_size % replicas:
        raise UserError(f"batch_size {config.batch_size} does not split evenly over {replicas} replicas: "
                        f"use a multiple of {replicas}", argument="batch_size")
    if config.xla == "on" and replicas > 1:
        # Measured: XLA cannot compile a loop whose variables live on several devices.
        raise UserError(f"xla 'on' compiles the training loop for one device, and strategy {config.strategy} runs "
                        f"{replicas} replicas: use xla 'auto' or 'off'", argument="xla")


class _LocalValidation(keras.callbacks.Callback):
    """Add `val_loss`, the mean NLL of `model` on `(x, y)`, to each epoch's logs."""

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray):
        super().__init__()
        self._network, self._x, self._y = model, x, y

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_loss"] = mean_nll(self._network, self._x, self._y)


def _validation_data(config: TrainConfig, corpus: Corpus, replicas: int) -> tf.data.Dataset | None:
    """Batches of up to 4096 examples, read whole by every worker; the first splits evenly over the replicas."""
    if config.strategy == "multiworker":
        return None  # `_LocalValidation` does it
    x, y = corpus.examples("val")
    batch_size = max(replicas, min(4096, len(x)) // replicas * replicas)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return make_dataset(x, y, batch_size=batch_size, shuffle=False).with_options(options)


def _check_new_run_dir(run_dir: Path) -> None:
    if (run_dir / rundir.BACKUP_DIR).exists():
        raise UserError(f"run_dir {run_dir} holds an interrupted run: continue it with resume=True, "
                        "or choose another run_dir", argument="run_dir")
    if (run_dir / rundir.CONFIG_FILE).exists():
        raise UserError(f"run_dir {run_dir} already holds a run: choose another run_dir", argument="run_dir")


def _start_run_dir(run_dir: Path, config: TrainConfig, corpus: Corpus, data_path: Path, plan: StepPlan) -> None:
    """Create the run directory with its vocabulary and config."""
    _create_run_dir(run_dir)
    corpus.vocab.save(run_dir / rundir.VOCAB_FILE)
    rundir.write_config(run_dir, config, plan, data=str(data_path.resolve()), data_sha256=file_sha256(data_path),
                        vocab_size=corpus.vocab.size, max_word_length=max(map(len, corpus.words)))


def _config_to_resume(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    if not (run_dir / rundir.CONFIG_FILE).exists():
        raise UserError(f"run_dir {run_dir} holds no run to resume (no {rundir.CONFIG_FILE}): start one there "
                        "with resume=False", argument="run_dir")
    if (run_dir / rundir.HISTORY_JSON).exists():
        raise UserError(f"run_dir {run_dir}: the run already finished, there is nothing to resume",
                        argument="run_dir")
    saved, _ = rundir.read_config(run_dir)
    if config is not None and config != saved:
        changed = [f"{f.name} {getattr(saved, f.name)!r} (given {getattr(config, f.name)!r})"
                   for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(config, f.name)]
        raise UserError(f"config differs from the run being resumed in {'; '.join(changed)}: a resumed run keeps "
                        "its own settings; resume without them, or train a new run", argument="config")
    if saved.strategy == "multiworker":
        raise UserError("a multi-worker run cannot be resumed: its workers' checkpoints are not kept; "
                        "train again into a new run_dir", argument="run_dir")
    return saved


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        raise UserError("strategy 'multiworker': the learning-rate sweep (lr-find) runs on one host; run it there "
                        "with strategy 'default' or 'mirrored', then train the cluster with its lr", argument="strategy")
    strategy = make_strategy(config.strategy)
    _check_replicas(config, strategy.num_replicas_in_sync)
    corpus = Corpus(read_words(Path(config.data) if config.data else load_names()), config.block_size,
                    seed=config.split_seed)
    x_train, y_train = corpus.examples("train")
    plan = plan_steps(config, len(x_train))
    model = compiled_model(config, corpus.vocab.size, plan, strategy)
    minibatches = random_minibatches(x_train, y_train, config.batch_size, config.seed, plan.total_steps)
    result = find_lr(model, minibatches, **finder_args)
    if run_dir is not None:
        _create_run_dir(Path(run_dir))
        result.save(run_dir)
    return result


def _create_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"run_dir {run_dir} cannot be written: {e.strerror}; choose another run_dir",
                        argument="run_dir") from None
