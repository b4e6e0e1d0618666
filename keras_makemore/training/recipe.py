"""The training recipe: from a `TrainConfig` to a run directory, in steps that `train`, `lr-find`, `tune` and
`sweep` all go through.

`prepare` (the data, the examples, the step plan) -> `Preparation.build` (the
compiled network) -> `fit_run` (fit into a run directory, checkpointed) ->
`rundir.finish_run_dir`. `train` reads top to bottom as that recipe;
`find_lr_for_config` sweeps the learning rate on what `prepare` gives; a `tune`
trial calls the same steps for each of its rounds. The minibatches are the lecture's,
`ix = randint(0, n, (batch,))` at every step, drawn by a `tf.data` pipeline
keyed on `(seed, step)` and cut from the corpus' flat ids
(`data.Windows.random_minibatches`); `engine.fit` runs up to 1,000 of them per
compiled call inside `model.fit`. A resumed run restores the
last checkpoint first and starts the pipeline at the restored step, so it
trains on the very minibatches the uninterrupted run would have.
"""

import contextlib
import dataclasses
import io
import math
import os
import time
import zipfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import engine
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import first_long_line, load_names
from keras_makemore.data.streaming import StreamedCorpus, failure_behind, open_corpus
from keras_makemore.data.vocabulary import MAX_VOCAB_SIZE
from keras_makemore.data.windows import Windows
from keras_makemore.data.words import WordSequences
from keras_makemore.errors import UserError
from keras_makemore.models import MODEL_NAMES, get_model_type, names_of_kind
from keras_makemore.models.base import MAX_WORD_LENGTH, WINDOW, WORD, ModelType, block_size_for, check_model_size
from keras_makemore.models.keras_model import loss, training_examples
from keras_makemore.training import rundir
from keras_makemore.training.callbacks import (
    AtomicBackupAndRestore,
    AtomicCSVLogger,
    BestModelCheckpoint,
    EarlyStoppingOnValLoss,
    SampleWords,
    StopOnNonFiniteLoss,
    ValLoss,
    tensorboard_callbacks,
)
from keras_makemore.training.config import MAX_BATCH_TOKENS, StepPlan, TrainConfig, plan_steps
from keras_makemore.training.distribute import is_chief, make_strategy, worker_dir
from keras_makemore.training.lr_finder import LRFinderResult, find_lr
from keras_makemore.training.optimizers import make_optimizer
from keras_makemore.training.run import load_model
from keras_makemore.training.threads import auto_intra_op_threads, set_intra_op_threads


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
    corpus: Corpus | StreamedCorpus
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
    # The workers of a cluster share the run directory (only the chief writes it), and cannot resume.
    shared = config is not None and config.strategy == "multiworker"
    with contextlib.ExitStack() as locks:
        def lock() -> bool:
            return shared or locks.enter_context(rundir.run_lock(run_dir))

        locked = lock()  # False when the directory does not exist yet: then once `_train` creates it
        try:
            return _train(config, run_dir, callbacks, verbose, num_samples, resume, tensorboard,
                          lock_new_run=lambda: locked or lock())
        except (tf.errors.OpError, UserError) as e:  # a streamed data file read in validation, or through tf.data
            failure = failure_behind(e) if isinstance(e, tf.errors.OpError) else e
            if not hasattr(failure, "problem") or not (run_dir / rundir.CONFIG_FILE).exists():
                raise  # not a streamed data file that changed, or no run started yet: said as it is
            raise UserError(f"{failure.problem}: training stopped, and what it saved is intact; put the original file "
                            f"back, then continue with `keras-makemore train --resume {run_dir}`",
                            argument="data") from None


def _train(config, run_dir, callbacks, verbose, num_samples, resume, tensorboard, lock_new_run) -> TrainResult:
    if num_samples < 0:
        raise UserError(f"num_samples must be 0 or more, got {num_samples}", argument="num_samples")
    config = rundir.config_to_resume(run_dir, config) if resume else config
    validate_config(config)
    if config.threads is not None:
        set_intra_op_threads(config.threads)  # before the strategy: a cluster's starts TensorFlow's runtime
    strategy = make_strategy(config.strategy)  # first: a cluster must be set up before other TF work
    chief = is_chief(strategy)
    if not resume and chief:
        rundir.check_new_run_dir(run_dir)
    check_replicas(config, strategy.num_replicas_in_sync)
    data_path = data_path_of(config)
    if resume and chief:  # before the data is read: a changed file of any size is refused at once
        rundir.check_data_unchanged(run_dir, data_path)

    # Data
    prep = prepare(config, data_path)
    if config.threads is None and strategy.num_replicas_in_sync == 1:
        set_intra_op_threads(auto_intra_op_threads(config, prep.corpus.vocab.size, prep.corpus.block_size),
                             explicit=False)
    if not resume and chief:
        rundir.create_run_dir(run_dir)
        lock_new_run()
        rundir.check_new_run_dir(run_dir)  # again, now that no other process can start a run there
        rundir.start_run_dir(run_dir, config, prep.corpus.vocab, data_path, prep.plan, prep.corpus.max_word_length)

    # Model and optimizer
    model = prep.build(strategy)
    if resume and chief:
        check_network_unchanged(run_dir, config, model)

    # Fit
    fitted = fit_run(prep, model, run_dir, resume=resume, chief=chief, verbose=verbose, num_samples=num_samples,
                     tensorboard=tensorboard, callbacks=callbacks)

    # Save
    if fitted.bad_step is not None:
        raise UserError(f"lr {config.lr} made training diverge: the loss became {fitted.bad_loss} near step "
                        f"{fitted.bad_step:,}; lower it and train again into a new run_dir", argument="lr")
    if not chief:
        return TrainResult(run_dir, model, prep.corpus, fitted.history.history, config, chief=False)
    check_converged(config, rundir.read_history(run_dir), prep.corpus.vocab.size)
    history = rundir.finish_run_dir(run_dir, fitted.seconds)
    # The model in memory is the saved one when the last epoch saved it (a cosine schedule's usual end): kept, the
    # saved file is not read back, and the functions traced on it (validation's) serve the caller's evaluation.
    kept = (fitted.history is not None and fitted.history.epoch and fitted.saved_epoch == fitted.history.epoch[-1]
            and strategy.num_replicas_in_sync == 1)
    return TrainResult(run_dir, model if kept else load_model(run_dir / rundir.MODEL_FILE), prep.corpus, history,
                       config)


def check_converged(config: TrainConfig, history: dict[str, list[float]], vocab_size: int) -> None:
    """A `UserError` when the last training and val losses are both over twice that of guessing uniformly,
    `log(vocab_size)`.

    A finite loss can diverge too (`lr 1e6`: millions of nats). Every network starts near the uniform guess
    (names: 3.30 for the MLP, 3.92 for the Transformer), and a run that learned anything ends below it on the
    training minibatches; the val loss alone can end far above it when a small corpus is overfitted (6.97 on
    the 27 tokens of tests/fixtures/words.txt after 6,000 Adam steps), which is no divergence.
    """
    train, val = history.get("loss", []), history.get("val_loss", [])
    uniform = math.log(vocab_size)
    if train and val and min(train[-1], val[-1]) > 2 * uniform:
        raise UserError(f"lr {config.lr} made training diverge: the training loss ended at {train[-1]:,.4g} and "
                        f"the val loss at {val[-1]:,.4g}, over twice the {uniform:.2f} of guessing uniformly among "
                        f"{vocab_size:,} tokens; lower it and train a new run", argument="lr")


def check_network_unchanged(run_dir: Path, config: TrainConfig, model: keras.Model) -> None:
    """Refuse to resume a run whose saved weights are not of `model`'s network (its config.json was edited).

    Keras would skip the weights that do not fit, train fresh ones on and overwrite the run's model. The
    shapes of the weights in the newest checkpoint and in `model.keras` are read without building their networks.
    """
    import h5py

    expected = sorted(tuple(w.shape) for w in model.weights)
    files = [path for _, path in AtomicBackupAndRestore(run_dir / rundir.BACKUP_DIR).checkpoints()[:1]]
    files += [run_dir / rundir.MODEL_FILE] if (run_dir / rundir.MODEL_FILE).exists() else []
    for path in files:
        try:
            rundir.check_file(path, limit=None)
            with contextlib.ExitStack() as stack:
                if path.suffix == ".keras":
                    archive = stack.enter_context(zipfile.ZipFile(path))
                    source = io.BytesIO(archive.read("model.weights.h5"))
                else:
                    source = path
                weights = stack.enter_context(h5py.File(source, "r"))
                shapes = []
                weights.visititems(lambda name, item: shapes.append(tuple(item.shape))
                                   if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/") else None)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            continue  # a damaged file: the checkpoint's loader falls back, the model file is rewritten
        if sorted(shapes) != expected:
            raise UserError(f"run_dir {run_dir}: its {rundir.CONFIG_FILE} describes a {config.model} network whose "
                            f"weights do not fit those in {path.relative_to(run_dir)}: {rundir.CONFIG_FILE} changed "
                            "since the run started; restore it, or train a new run", argument="run_dir")


def data_path_of(config: TrainConfig) -> Path:
    """The word list `config` trains on: its `data`, or the packaged names."""
    return Path(config.data) if config.data else load_names()


@dataclasses.dataclass
class Preparation:
    """What a run of `config` trains on, prepared once: the data split for its network, the examples, the step plan.

    Args:
        config: the run's settings.
        model_type: `config.model`'s `ModelType`.
        data_path: the word list.
        corpus: its words split for the network's context.
        examples: the training split's examples (`Windows`, or a word model's `WordSequences`).
        plan: how the run's steps are cut into epochs.
    """

    config: TrainConfig
    model_type: ModelType
    data_path: Path
    corpus: Corpus | StreamedCorpus
    examples: Windows | WordSequences
    plan: StepPlan

    def build(self, strategy: tf.distribute.Strategy | None = None, plan: StepPlan | None = None) -> keras.Model:
        """The freshly initialised network, compiled under `strategy` as `train` fits it (`plan`: another step plan)."""
        return compiled_model(self.config, self.corpus.vocab.size, self.corpus.block_size, plan or self.plan,
                              strategy or tf.distribute.get_strategy())

    def minibatches(self, first_step: int = 0, total_steps: int | None = None) -> tf.data.Dataset:
        """The run's minibatches from `first_step` on: the lecture's, drawn by `(seed, step)`."""
        return self.examples.random_minibatches(self.config.batch_size, self.config.seed,
                                                total_steps or self.plan.total_steps, first_step)


def prepare(config: TrainConfig, data_path: Path | None = None,
            corpus: Corpus | StreamedCorpus | None = None) -> Preparation:
    """Check `config`, read its data (or take `corpus`, already split for its network) and plan its steps."""
    validate_config(config)
    model_type = get_model_type(config.model)
    data_path = data_path or data_path_of(config)
    corpus = corpus or corpus_for(config, data_path)
    examples = training_examples(model_type, corpus, "train", config.pack_words)
    return Preparation(config, model_type, data_path, corpus, examples, plan_steps(config, len(examples)))


@dataclasses.dataclass
class FitOutcome:
    """What `fit_run` did.

    Args:
        history: Keras' `History` of this session (`None` if nothing was left to fit).
        seconds: the wall time of the fit.
        bad_step, bad_loss: where the loss stopped being finite (`None` if it stayed so).
        saved_epoch: the last epoch whose model was saved as the best.
        stopped_early: whether early stopping ended it.
    """

    history: keras.callbacks.History | None
    seconds: float
    bad_step: int | None
    bad_loss: float | None
    saved_epoch: int | None
    stopped_early: bool


def fit_run(prep: Preparation, model: keras.Model, run_dir: Path, resume: bool, epochs: int | None = None,
            chief: bool = True, verbose: int | str = 0, num_samples: int = 0, tensorboard: bool = False,
            callbacks: Sequence[keras.callbacks.Callback] = ()) -> FitOutcome:
    """Fit `model` into `run_dir` up to Keras epoch `epochs` (default: the whole run), checkpointing each epoch.

    With `resume`, the last checkpoint is restored first and the minibatches
    start at the step it reached, so the run trains on the very minibatches
    the uninterrupted run would have. Each epoch validates, saves the best
    model and appends the CSV log, then checkpoints.
    """
    config, plan = prep.config, prep.plan
    with worker_dir(run_dir, chief) as out_dir:
        backup = AtomicBackupAndRestore(out_dir / rundir.BACKUP_DIR, delete_checkpoint=not chief)
        first_step = restore_checkpoint(model, backup) if resume else 0
        stop_on_nan = StopOnNonFiniteLoss()
        # The checkpoint comes after the CSV log and the best model: a failure at any of those writes leaves the
        # checkpoint of the epoch before, and the resumed run writes that epoch's row and model again.
        fit_callbacks = [stop_on_nan, *run_callbacks(config, prep.corpus, run_dir, model, chief, verbose, num_samples,
                                                     tensorboard, backup.restored_epoch), backup, *callbacks]
        if verbose != 0 and chief:
            _print_plan(prep, model, resume, run_dir, backup)
        started = time.perf_counter()
        history = (fit_minibatches(prep, model, prep.minibatches(first_step), fit_callbacks,
                                   epochs=plan.epochs if epochs is None else min(epochs, plan.epochs),
                                   verbose=verbose if chief else 0)
                   if first_step < plan.total_steps else None)  # only the history was left to write
        seconds = time.perf_counter() - started
    saved = next((c.saved_epoch for c in fit_callbacks if isinstance(c, BestModelCheckpoint)), None)
    stopped = any(isinstance(c, EarlyStoppingOnValLoss) and c.stopped_epoch for c in fit_callbacks)
    return FitOutcome(history, seconds, stop_on_nan.bad_step, stop_on_nan.bad_loss, saved, stopped)


def fit_minibatches(prep: Preparation, model: keras.Model, minibatches: tf.data.Dataset,
                    callbacks: Sequence[keras.callbacks.Callback], epochs: int | None = None,
                    steps_per_epoch: int | None = None, verbose: int | str = 0) -> keras.callbacks.History:
    """`engine.fit` of `model` on `minibatches`, with what XLA compiles as the model type says: the one place the
    package trains a model."""
    return engine.fit(model, minibatches, xla=prep.model_type.xla_scope, epochs=epochs or prep.plan.epochs,
                      steps_per_epoch=steps_per_epoch or prep.plan.steps_per_epoch, callbacks=list(callbacks),
                      verbose=verbose)


def compiled_model(config: TrainConfig, vocab_size: int, block_size: int, plan: StepPlan,
                   strategy: tf.distribute.Strategy) -> keras.Model:
    """The freshly initialised network of `config`, compiled under `strategy` as `train` fits it.

    `block_size` is the context of the network (`corpus.block_size`).
    """
    model_type = get_model_type(config.model)
    xla = config.xla == "on" or (config.xla == "auto" and strategy.num_replicas_in_sync == 1
                                 and (not config.dropout or model_type.xla_scope == "step"))
    with strategy.scope():
        model = model_type.build(config, vocab_size, block_size)
        optimizer = make_optimizer(config, plan.total_steps, model_type.decay_exempt)
        model.compile(optimizer=optimizer, loss=loss(model_type), steps_per_execution=plan.steps_per_execution,
                      jit_compile=xla)
    return model


def validate_config(config: TrainConfig) -> None:
    """`config.validate()`, then what its model type asks of it."""
    config.validate()
    model_type = get_model_type(config.model)
    if config.pack_words and not model_type.packs_words:
        packing = ", ".join(name for name in MODEL_NAMES if get_model_type(name).packs_words)
        raise UserError(f"model {config.model} cannot keep words packed in one row apart: train it with "
                        f"pack_words=False (models that can: {packing})", argument="pack_words")
    model_type.check(config)


def corpus_for(config: TrainConfig, data_path: Path) -> Corpus | StreamedCorpus:
    """The words of `data_path` split for `config`, with the context of its network; its size checked."""
    model_type = get_model_type(config.model)
    corpus = open_corpus(data_path, config.block_size, seed=config.split_seed)
    if corpus.vocab.size > MAX_VOCAB_SIZE:
        raise UserError(f"data file {data_path} has {corpus.vocab.size - 1:,} distinct characters, over the "
                        f"{MAX_VOCAB_SIZE - 1:,} a model's vocabulary holds (each costs an output row and a logit "
                        "per example in every pass): use text of fewer distinct characters", argument="data")
    if model_type.context == WORD and corpus.max_word_length > MAX_WORD_LENGTH:
        number, length = first_long_line(data_path, MAX_WORD_LENGTH)
        raise UserError(f"model {config.model} sees whole words, and line {number:,} of {data_path} has {length:,} "
                        f"characters, over the limit of {MAX_WORD_LENGTH:,} a word model trains on: remove the long "
                        f"lines, or use a window model ({', '.join(names_of_kind(WINDOW))})", argument="data")
    block_size = block_size_for(model_type, config.block_size, corpus.max_word_length)
    if block_size != corpus.block_size:
        if isinstance(corpus, StreamedCorpus):
            raise UserError(f"model {config.model} trains on whole words held in memory, and {data_path} is "
                            f"streamed from disk for its size: use a window model ({', '.join(names_of_kind(WINDOW))})",
                            argument="model")
        corpus = corpus.with_block_size(block_size)
    check_model_size(model_type, config, corpus.vocab.size, corpus.block_size)
    row = corpus.block_size + 1  # a window and its target, or a word model's row of inputs and targets
    if config.batch_size * row > MAX_BATCH_TOKENS:
        raise UserError(f"batch_size {config.batch_size:,} of {row:,} characters each (model {config.model}) makes "
                        f"minibatches of {config.batch_size * row:,} characters, over the limit of "
                        f"{MAX_BATCH_TOKENS:,}: use a batch_size of at most {MAX_BATCH_TOKENS // row:,}",
                        argument="batch_size")
    return corpus


def run_callbacks(config, corpus, run_dir, model, chief, verbose, num_samples, tensorboard, first_epoch) -> list:
    """Validation; the chief's checkpoint, CSV log and TensorBoard; the progress bar and samples."""
    # Each worker validates its own copy of the synchronised weights. Keras' `validation_data` compiled a test
    # function per run (0.8 s of the lecture recipe's 20) and under MultiWorkerMirroredStrategy failed on
    # (x, y) batches (its strategy.reduce of the first batch takes no tuple).
    out = [ValLoss(model, corpus, config.eval_max_examples)]
    if config.early_stop is not None:
        earlier = rundir.read_history(run_dir).get("val_loss", []) if chief else []
        saved = run_dir / rundir.MODEL_FILE
        best = load_model(saved).get_weights() if earlier and saved.exists() else None
        out.append(EarlyStoppingOnValLoss(config.early_stop, earlier, best))
    if chief:
        out += [BestModelCheckpoint(run_dir / rundir.MODEL_FILE, initial_best=rundir.best_val_loss(run_dir, first_epoch)),
                AtomicCSVLogger(run_dir / rundir.HISTORY_CSV)]
        if tensorboard:
            out += tensorboard_callbacks(run_dir / rundir.TENSORBOARD_DIR, corpus.vocab)
    if verbose != 0 and chief:
        # Listed before SampleWords so the epoch's last progress line is printed before the samples.
        out.append(keras.callbacks.ProgbarLogger())
        if num_samples:
            out.append(SampleWords(corpus.vocab, corpus.block_size, num_samples, seed=config.seed))
    return out


def restore_checkpoint(model: keras.Model, backup: AtomicBackupAndRestore) -> int:
    """Load the last checkpoint now, before the minibatches are made; return the step it reached.

    `fit` restores it again as it starts (the same files), and resumes from its epoch.
    """
    backup.set_model(model)
    with model.distribute_strategy.scope():
        backup.on_train_begin()
    step = int(model.optimizer.iterations.numpy())
    # The checkpoint holds no `SeedGenerator` state, so dropout would draw the first steps' masks again.
    # A `Dropout` layer draws once per training step (its state is `[seed, steps]`, measured): set it there.
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout) and layer.seed is not None:
            layer.seed_generator.state.assign(np.array([layer.seed, step], layer.seed_generator.state.dtype))
    return step


def _print_plan(prep: Preparation, model: keras.Model, resume: bool, run_dir: Path,
                backup: AtomicBackupAndRestore) -> None:
    config, plan = prep.config, prep.plan
    if backup.skipped:
        print(f"skipped damaged checkpoints in {run_dir / rundir.BACKUP_DIR}: {', '.join(backup.skipped)}")
    if resume and backup.restored_epoch:
        print(f"resuming the run in {run_dir} from its checkpoint at step {backup.restored_epoch * plan.steps_per_epoch:,}")
    elif resume:
        print(f"the run in {run_dir} has no usable checkpoint (it stopped before its first one): "
              "training it from step 0")
    print(f"training {config.model}: {model.count_params():,} parameters on {len(prep.examples):,} examples "
          f"({prep.corpus.split_size('train'):,} words) for {plan.total_steps:,} steps of batch {config.batch_size}, "
          f"validating every {plan.steps_per_epoch:,} steps")
    replicas = model.distribute_strategy.num_replicas_in_sync
    if config.strategy != "default":
        print(f"strategy {config.strategy}: global batch {config.batch_size} = "
              f"{config.batch_size // replicas} per replica x {replicas} replicas")


def check_replicas(config: TrainConfig, replicas: int) -> None:
    if config.batch_size % replicas:
        raise UserError(f"batch_size {config.batch_size} does not split evenly over {replicas} replicas: "
                        f"use a multiple of {replicas}", argument="batch_size")
    if config.xla == "on" and replicas > 1:
        # Measured: XLA cannot compile a loop whose variables live on several devices.
        raise UserError(f"xla 'on' compiles the training loop for one device, and strategy {config.strategy} runs "
                        f"{replicas} replicas: use xla 'auto' or 'off'", argument="xla")


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
        rundir.check_new_run_dir(Path(run_dir))
    validate_config(config)
    if config.strategy == "multiworker":
        raise UserError("strategy 'multiworker': the learning-rate sweep (lr-find) runs on one host; run it there "
                        "with strategy 'default' or 'mirrored', then train the cluster with its lr", argument="strategy")
    strategy = make_strategy(config.strategy)
    check_replicas(config, strategy.num_replicas_in_sync)
    prep = prepare(config)
    result = find_lr(prep.build(strategy), prep.minibatches(), **finder_args)
    if run_dir is not None:
        rundir.create_run_dir(Path(run_dir))
        result.save(run_dir)
    return result
