"""`tune()`: a KerasTuner search for the `TrainConfig` with the lowest val loss within a wall-clock budget.

The search space is a table per model type, `TrainConfig` field -> values
(`config.TUNE_SPACE` and `config.TUNE_MODELS`), its relative ranges resolved
against the model type's base config (its own preset): a trial of a
transformer starts from the `transformer` preset, a trial of the MLP from
`lecture`. With several model types, `model` is a hyperparameter and each
type's rows are declared under its KerasTuner conditional scope (and name
scope, `gru/lr`), so a trial has the values of its own type's rows only.
`TrainConfigHyperModel` turns a trial's hyperparameters into a `TrainConfig`,
builds its network as `train` does, and its `fit` trains it through
`engine.fit` into a normal run directory (`DIR/search/trial_N/run/`), with
`train`'s checkpoint, history and early stopping. Hyperband continues a trial of an earlier round from that trial's
last checkpoint, weights and optimizer, and starts the minibatch stream at the
step it reached, as `train(resume=True)` does: a trial trained to the end is
the very run `train` makes of its config.

KerasTuner keeps its oracle in `DIR/search/`; `tune.json` keeps the settings,
the seconds spent and the measured speeds. Run again over the same directory,
the search continues: finished trials are kept, an interrupted trial resumes
from its last checkpoint, and the budget counts the time already spent. A trial
is started only if its estimated time (its steps at the speed measured on this
machine for its model type, validation and compilation included) fits in what
is left.
"""

import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Mapping

import keras
import keras_tuner
import numpy as np

from keras_makemore import atomic
from keras_makemore.analysis.plots import plot_tune
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import check_data_file, load_names
from keras_makemore.data.streaming import StreamedCorpus
from keras_makemore.errors import UserError
from keras_makemore.models import get_model_type
from keras_makemore.models.base import block_size_for, check_model_size
from keras_makemore.search.space import TUNE_MODELS, TUNE_SPACE, LogRange, TuneConfig
from keras_makemore.training import rundir
from keras_makemore.training.callbacks import (
    ValLoss,
)
from keras_makemore.training.config import TrainConfig, plan_steps
from keras_makemore.training.distribute import make_strategy
from keras_makemore.training.recipe import Preparation, corpus_for, fit_minibatches, fit_run, prepare

TUNE_CSV = "tune.csv"
TUNE_PNG = "tune.png"
TUNE_JSON = "tune.json"
BEST_DIR = "best"
PROJECT = "search"
RUN_DIR = "run"
OBJECTIVE = "val_loss"


@dataclasses.dataclass
class TuneResult:
    """What `tune` returns.

    Args:
        rows: one row per trial, as in `tune.csv`.
        best: the best trial's row (`None` if no trial finished).
        best_config: the `TrainConfig` of the best trial.
        best_dir: the copy of its run directory, `out_dir/best`.
        stopped: why the search ended: `"done"` (the tuner tried everything
            it wanted, or `max_trials`) or `"budget"`.
        seconds_used: the search's wall-clock seconds, all sessions.
    """

    rows: list[dict]
    best: dict | None
    best_config: TrainConfig | None
    best_dir: Path | None
    stopped: str
    seconds_used: float


def search_space(config: TuneConfig, base: TrainConfig | Mapping[str, TrainConfig] | None,
                 fixed: dict | None = None) -> dict[str, dict]:
    """The search space of each model type of `config.model`, a table field -> values or `LogRange`.

    A model type's table is `TUNE_SPACE` updated with its `TUNE_MODELS` rows;
    fields without a row keep the base config's value.

    Args:
        config: the search's settings (its `model`).
        base: each model type's base config (see `tune`); a relative range
            multiplies its value.
        fixed: field -> a value (that field is not searched) or a tuple of
            values to try, replacing the row of every model type that has one.

    Returns:
        `{model: {field: values}}`, every relative `LogRange` resolved against
        that model's base; a `LogRange` over an integer field becomes the tuple
        of its values.

    Example:

    >>> space = search_space(TuneConfig(model="all"), None)
    >>> space["transformer"]["steps"], space["bigram"]["steps"]
    ((12000, 24000, 48000), (1000, 2000, 4000))
    >>> "block_size" in space["gru"], "hidden_units" in space["bigram"]
    (False, False)
    """
    bases = base_configs(config, base)
    fixed = dict(fixed or {})
    tables = {model: TUNE_SPACE | TUNE_MODELS[model] for model in bases}
    for name in fixed:
        if not any(name in table for table in tables.values()):
            known = sorted(set().union(*tables.values()))
            raise UserError(f"{name} is not searched for model {config.model}: fix it in the preset, or choose a "
                            f"field of {', '.join(known)}", argument=name)
    space = {}
    for model, table in tables.items():
        space[model] = {name: _resolve(fixed.get(name, values), bases[model], name) for name, values in table.items()}
        _check_rows(bases[model], space[model])
    return space


def base_configs(config: TuneConfig, base: TrainConfig | Mapping[str, TrainConfig] | None) -> dict[str, TrainConfig]:
    """Model type -> its base config: `base`'s entry, `base` itself (for every type), or (`None`) its preset."""
    if base is None:
        return config.base_configs()
    if isinstance(base, TrainConfig):
        return {model: dataclasses.replace(base, model=model) for model in config.models()}
    missing = [model for model in config.models() if model not in base]
    if missing:
        raise UserError(f"base has no config for model {', '.join(missing)}: give one per model type searched "
                        "(TuneConfig.base_configs makes them from the presets)", argument="base")
    return {model: dataclasses.replace(base[model], model=model) for model in config.models()}


def _resolve(values, base: TrainConfig, name: str):
    """A row's values, a relative range multiplied by `base`'s value; an integer field's range as a tuple."""
    if not isinstance(values, LogRange):
        return tuple(dict.fromkeys(values if isinstance(values, (tuple, list)) else (values,)))
    if values.relative:
        values = LogRange(values.low * getattr(base, name), values.high * getattr(base, name))
    if TrainConfig.__dataclass_fields__[name].type is not int:
        return values
    doublings = math.floor(math.log2(values.high / values.low) + 1e-9)
    return tuple(dict.fromkeys(max(1, round(values.low * 2 ** k)) for k in range(doublings + 1)))


def _check_rows(base: TrainConfig, rows: dict) -> None:
    """A `UserError` if a value of a row, or a combination of the network's values, cannot train."""
    model_type = get_model_type(base.model)
    values = {name: row for name, row in rows.items() if not isinstance(row, LogRange)}  # a LogRange is valid
    for name, row in values.items():
        for value in row:
            dataclasses.replace(base, **{name: value}).validate()
    network = [name for name in model_type.hyperparameters if name in values]
    for combination in itertools.product(*(rows[name] for name in network)):
        try:
            model_type.check(dataclasses.replace(base, **dict(zip(network, combination))))
        except UserError as e:
            raise UserError(f"model {base.model} cannot train every combination searched: {e}",
                            argument=e.argument) from None


def _check_sizes(space: dict, bases: Mapping[str, TrainConfig], hypermodel: "TrainConfigHyperModel") -> None:
    """A `UserError` before anything trains if a combination of a model type's rows makes too large a network."""
    for model, rows in space.items():
        corpus = hypermodel.corpus(bases[model])  # one vocabulary for every network; read once per kind of context
        model_type = get_model_type(model)
        network = [name for name in model_type.hyperparameters if name in rows and not isinstance(rows[name], LogRange)]
        for combination in itertools.product(*(rows[name] for name in network)):
            config = dataclasses.replace(bases[model], **dict(zip(network, combination)))
            try:
                check_model_size(model_type, config, corpus.vocab.size,
                                 block_size_for(model_type, config.block_size, corpus.max_word_length))
            except UserError as e:
                raise UserError(f"model {model} cannot train every combination searched: {e}",
                                argument=e.argument) from None


class TrainConfigHyperModel(keras_tuner.HyperModel):
    """A KerasTuner `HyperModel` over `TrainConfig`: hyperparameters in, a trained run directory out.

    Args:
        bases: model type -> the settings of its trials that the space does
            not set (`base_configs`).
        space: the tables of `search_space`.
        evals: validation passes per trial.
        hyperband: the run length is Hyperband's (the largest `steps`), not a
            hyperparameter.

    Example:

    ```python
    bases = TuneConfig(model="gru").base_configs()
    hypermodel = TrainConfigHyperModel(bases, search_space(TuneConfig(model="gru"), bases), evals=10)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    model = hypermodel.build(hp)
    best_val = hypermodel.fit(hp, model, run_dir="runs/one-trial")["val_loss"]
    ```
    """

    def __init__(self, bases: Mapping[str, TrainConfig], space: dict, evals: int, hyperband: bool = False):
        super().__init__()
        self.bases, self.space, self.evals, self.hyperband = dict(bases), space, evals, hyperband
        self._corpora: dict[tuple[str, int], Corpus | StreamedCorpus] = {}
        data = {base.data for base in self.bases.values()}
        if len(data) > 1:
            raise UserError(f"base configs train on different data ({', '.join(map(str, data))}): every trial of "
                            "a search trains and validates on the same words", argument="data")
        self.data_path = Path(data.pop()) if None not in data else load_names()

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        """Declare `model` and each model type's rows, under its `model` condition and name scope (`gru/lr`)."""
        models = list(self.space)
        if len(models) > 1:
            hp.Choice("model", models)
        else:
            hp.Fixed("model", models[0])
        for model, rows in self.space.items():
            with hp.conditional_scope("model", [model]), hp.name_scope(model):
                for name, values in rows.items():
                    if not (self.hyperband and name == "steps"):
                        _declare(hp, name, values)

    def config(self, hp: keras_tuner.HyperParameters) -> TrainConfig:
        """The trial's `TrainConfig`: its model type's base, with the values of that type's rows."""
        model = hp.values["model"]
        rows = self.space[model]
        values = {name: hp.values[f"{model}/{name}"] for name in rows if f"{model}/{name}" in hp.values}
        values["model"] = model
        if self.hyperband:
            values["steps"] = max(rows["steps"])
        values["eval_every"] = max(1, values.get("steps", self.bases[model].steps) // self.evals)
        if self.hyperband:
            values["steps"] = values["eval_every"] * self.evals  # exactly `evals` rounds
        config = dataclasses.replace(self.bases[model], **values)
        config.validate()
        return config

    def prepare(self, config: TrainConfig) -> Preparation:
        """What a trial of `config` trains on (`recipe.prepare`)."""
        return prepare(config, self.data_path, self.corpus(config))

    def corpus(self, config: TrainConfig) -> Corpus | StreamedCorpus:
        """The data split for `config`'s network (its size checked), read once per kind of context."""
        key = (get_model_type(config.model).context, config.block_size)
        if key not in self._corpora:
            self._corpora[key] = corpus_for(config, self.data_path)
        return self._corpora[key]

    def plan(self, config: TrainConfig):
        return self.prepare(config).plan

    def parameters(self, config: TrainConfig) -> int:
        corpus = self.corpus(config)
        return get_model_type(config.model).count_parameters(config, corpus.vocab.size, corpus.block_size)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The trial's network, compiled as `train` compiles it."""
        config = self.config(hp)
        return self.prepare(config).build(make_strategy(config.strategy))

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, run_dir: str | os.PathLike,
            epochs: int | None = None, callbacks=()) -> dict:
        """Train `model` into `run_dir` up to Keras epoch `epochs` (default: the whole run), as `train` does.

        A run directory holding a checkpoint is continued from it: the model
        and optimizer are restored and the minibatches start at the step it
        reached. The run is finished (`history.json`, no checkpoint) when it
        reaches its last step, stops early or diverges; otherwise its
        checkpoint stays for a later round.

        Returns:
            `{"val_loss": the lowest val loss of the run, "fit_seconds": the
            seconds in engine.fit}`.
        """
        run_dir = Path(run_dir)
        prep = self.prepare(self.config(hp))
        config, plan = prep.config, prep.plan
        epochs = plan.epochs if epochs is None else min(epochs, plan.epochs)
        if not (run_dir / rundir.CONFIG_FILE).exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            rundir.start_run_dir(run_dir, config, prep.corpus.vocab, self.data_path, plan,
                                 prep.corpus.max_word_length)
        # A checkpoint cut short by a kill is skipped (the one before it, or none, is restored).
        fitted = fit_run(prep, model, run_dir, resume=True, epochs=epochs, callbacks=callbacks)
        if epochs == plan.epochs or fitted.stopped_early or fitted.bad_step is not None:
            rundir.finish_run_dir(run_dir, fitted.seconds)
        best = rundir.best_val_loss(run_dir)
        if not math.isfinite(best):
            raise keras_tuner.errors.FailedTrialError(
                f"lr {config.lr} made training diverge near step {fitted.bad_step}")
        return {OBJECTIVE: best, "fit_seconds": fitted.seconds}


def _declare(hp, name: str, values) -> None:
    if isinstance(values, LogRange):
        hp.Float(name, values.low, values.high, step=2, sampling="log")
    else:
        hp.Choice(name, list(values), ordered=all(isinstance(v, (int, float)) for v in values))


class _TrialError(keras_tuner.errors.FatalError):
    """An error inside a trial that must end the search (KerasTuner would record it and go on)."""


@contextlib.contextmanager
def reraise_trial_errors():
    """Let a trial's exceptions end the search, except KerasTuner's `FailedTrialError` (a diverged trial).

    KerasTuner marks a trial that raises as invalid and goes on; a user's error
    (a missing data file) or a bug would then be hidden in its trial.json. Use
    it around the body of `run_trial`, and `search` to run the tuner.
    """
    try:
        yield
    except keras_tuner.errors.FailedTrialError:
        raise
    except Exception as e:
        raise _TrialError(str(e)) from e


def search(tuner: keras_tuner.engine.base_tuner.BaseTuner) -> None:
    """`tuner.search()` without KerasTuner's display, raising the error of a trial as it was raised."""
    error = None
    try:
        tuner.search(verbose=0)
    except _TrialError as e:
        error, e.__cause__ = e.__cause__, None  # no cycle between the two: the CLI walks the chain
    if error is not None:
        raise error


class _BudgetSpent(Exception):
    def __init__(self, message: str):
        super().__init__(message)


class _Budget:
    """The search's clock and its speed measurements, kept in `tune.json` across sessions."""

    def __init__(self, path: Path, seconds: float, state: dict):
        self.path, self.seconds = path, seconds
        self.state = state
        self._since = time.monotonic()

    @property
    def used(self) -> float:
        return self.state["seconds_used"] + time.monotonic() - self._since

    def save(self) -> None:
        self.state["seconds_used"] = round(self.used, 3)
        self._since = time.monotonic()
        atomic.write_json(self.path, self.state)

    def measure(self, trial_id: str, timing: dict) -> None:
        self.state["trials"][trial_id] = timing
        self.save()

    def measured(self, model: str) -> list[dict]:
        """The timings of `model`'s networks measured so far."""
        return [t for t in self.state["trials"].values() if t.get("step_seconds") and t.get("model") == model]

    def estimate(self, model: str, work: float, params: int, steps: int, evals: int) -> float | None:
        """Seconds for `steps` steps and `evals` validation passes of a `model` network, from the speeds of
        that model type's networks measured so far (`None` before any)."""
        timings = self.measured(model)
        if not timings:
            return None
        per_step = _scaled(work, [(t["work"], t["step_seconds"]) for t in timings])
        per_eval = _scaled(params, [(t["params"], t["eval_seconds"]) for t in timings if t.get("eval_seconds")])
        fixed = max(t["fixed_seconds"] for t in timings)
        return steps * per_step + evals * per_eval + fixed


def _scaled(x: float, points: list[tuple[float, float]]) -> float:
    """y at `x`, interpolated between measured points; flat below them, proportional above them."""
    if not points:
        return 0.0
    xs, ys = zip(*sorted(points))
    if x > xs[-1]:
        return ys[-1] * x / xs[-1]
    return float(np.interp(x, xs, ys))


class _Timer(keras.callbacks.Callback):
    """Time the training steps (the first compiled call of each session excluded) and the epochs' ends.

    An epoch's end, from its last step to this callback (listed last), is its validation pass and the writes
    that follow it: what each validation pass costs a trial.
    """

    def __init__(self, steps_per_call: int, on_epoch: Callable[[], None]):
        super().__init__()
        self.steps_per_call, self.on_epoch = steps_per_call, on_epoch
        self.step_seconds = self.steps = self.eval_seconds = self.evals = 0
        self.first_call_seconds = None
        self._last = None

    def on_train_batch_begin(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        seconds, self._last = now - self._last, now  # and the epoch's end is timed from here
        if self.first_call_seconds is None:
            self.first_call_seconds = seconds
        else:
            self.step_seconds += seconds
            self.steps += self.steps_per_call

    def on_epoch_end(self, epoch, logs=None):
        self.eval_seconds += time.perf_counter() - self._last
        self.evals += 1
        self.on_epoch()


class _Tuner(keras_tuner.Tuner):
    """Runs each trial into its own run directory, within the budget, and reports it in one line.

    A trial that would not end within the budget is not started. If the
    cheapest trial seen in this session would fit, it is skipped (KerasTuner
    counts it as failed) and the search goes on: over several model types the
    costs of the trials differ a hundredfold, and a large draw must not end the
    search while smaller ones fit. Otherwise, or after `MAX_SKIPS` skips in a
    row, the search ends.
    """

    MAX_SKIPS = 20

    def __init__(self, budget: _Budget, print_fn, **kwargs):
        super().__init__(**kwargs)
        self.budget, self.print_fn = budget, print_fn
        self._cheapest, self._skips, self._skipped = math.inf, 0, {}

    def run_dir(self, trial_id: str) -> Path:
        return Path(self.get_trial_dir(trial_id)) / RUN_DIR

    def save(self):
        atomic.write_json(self._get_tuner_fname(), self.get_state())  # as `_AtomicSaves`

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.oracle.save()  # `end_trial` saved it while the trial still counted as running

    def _span(self, trial) -> tuple[TrainConfig, int, int]:
        """The trial's config and the epochs it starts from and trains to."""
        hp = trial.hyperparameters
        config = self.hypermodel.config(hp)
        plan = self.hypermodel.plan(config)
        start = hp.values.get("tuner/initial_epoch", 0) if "tuner/trial_id" in hp.values else 0
        done = self._epochs_done(trial.trial_id)
        return config, max(start, done), min(hp.values.get("tuner/epochs", plan.epochs), plan.epochs)

    def _epochs_done(self, trial_id: str) -> int:
        return len(rundir.read_history(self.run_dir(trial_id)).get("val_loss", []))

    def on_trial_begin(self, trial):
        config, start, end = self._span(trial)
        plan = self.hypermodel.plan(config)
        params = self.hypermodel.parameters(config)
        if not self.budget.measured(config.model):
            left = self.budget.seconds - self.budget.used
            if left < self._cheapest < math.inf:  # no time left to measure another model type
                raise _BudgetSpent(f"{max(0, left):.0f} s of the budget are left, less than the cheapest trial seen "
                                   f"would take ({self._cheapest:.0f} s)")
            self._probe(trial.hyperparameters)
        estimate = 0.0 if end <= start else self.budget.estimate(
            config.model, config.batch_size * params, params, (end - start) * plan.steps_per_epoch, end - start)
        left = self.budget.seconds - self.budget.used
        if end > start:  # a trial finished before costs nothing, and says nothing of the cost of others
            self._cheapest = min(self._cheapest, estimate)
        if estimate > left:
            why = f"it would take about {estimate:.0f} s and {max(0, left):.0f} s of the budget are left"
            self._skips += 1
            if left < self._cheapest or self._skips > self.MAX_SKIPS:  # not even the cheapest trial seen fits
                raise _BudgetSpent(f"trial {trial.trial_id} {why.removeprefix('it ')}")
            self._skipped[trial.trial_id] = f"not started: {why}"
        else:
            self._skips = 0
        super().on_trial_begin(trial)

    def _try_run_and_update_trial(self, trial, *args, **kwargs):
        if trial.trial_id not in self._skipped:
            return super()._try_run_and_update_trial(trial, *args, **kwargs)
        # Failed without an exception: KerasTuner would print its traceback.
        trial.status, trial.message = keras_tuner.engine.trial.TrialStatus.FAILED, self._skipped[trial.trial_id]
        config = self.hypermodel.config(trial.hyperparameters)
        self.print_fn(f"[trial {trial.trial_id}] {_describe(config, self.hypermodel.space)}: {trial.message}")

    def _probe(self, hp) -> None:
        """Measure the speed of the first network of a model type on a few hundred steps, before starting it."""
        prep = self.hypermodel.prepare(self.hypermodel.config(hp))
        config = prep.config
        chunk = min(100, prep.plan.steps_per_execution)
        plan = plan_steps(dataclasses.replace(config, steps=3 * chunk, eval_every=3 * chunk), 1)._replace(
            steps_per_execution=chunk)
        keras.backend.clear_session()
        started = time.perf_counter()
        model = prep.build(make_strategy(config.strategy), plan)
        timer = _Timer(chunk, lambda: None)
        fit_minibatches(prep, model, prep.minibatches(total_steps=plan.total_steps),
                        [ValLoss(model, prep.corpus, config.eval_max_examples), timer], epochs=1,
                        steps_per_epoch=plan.steps_per_epoch)
        self.budget.measure(f"probe {config.model}", _timing(timer, config, self.hypermodel.parameters(config),
                                             time.perf_counter() - started))

    def run_trial(self, trial, *args, **kwargs):
        with reraise_trial_errors():
            hp = trial.hyperparameters
            config, start, end = self._span(trial)
            run_dir = self.run_dir(trial.trial_id)
            previous = hp.values.get("tuner/trial_id")
            how = self._prepare(run_dir, previous)
            if (run_dir / rundir.HISTORY_JSON).exists():
                self._report(trial, config, "done before")
                return {OBJECTIVE: rundir.best_val_loss(run_dir)}
            started = time.perf_counter()
            model = self._try_build(hp)
            timer = _Timer(model.steps_per_execution, self.budget.save)
            result = self.hypermodel.fit(hp, model, run_dir, epochs=end, callbacks=[timer])
            if previous is not None:  # Hyperband continues a trial once: its checkpoint now lives on here
                shutil.rmtree(self.run_dir(previous) / rundir.BACKUP_DIR, ignore_errors=True)
            self.budget.measure(trial.trial_id, _timing(timer, config, self.hypermodel.parameters(config),
                                                        time.perf_counter() - started)
                                | {"fit_seconds": round(result["fit_seconds"], 3), "previous": previous})
            self._report(trial, config, how, first_step=start * self.hypermodel.plan(config).steps_per_epoch)
            return {OBJECTIVE: result[OBJECTIVE]}

    def _prepare(self, run_dir: Path, previous: str | None) -> str:
        """Make the trial's run directory ready to train; say how the trial starts."""
        if (run_dir / rundir.BACKUP_DIR).exists() or (run_dir / rundir.HISTORY_JSON).exists():
            return "resumed"
        if run_dir.exists():  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        if previous is None:
            return "trained"
        with atomic.atomic_dir(run_dir) as tmp:
            shutil.copytree(self.run_dir(previous), tmp)
        return f"continued trial {previous}"

    def _report(self, trial, config: TrainConfig, how: str, first_step: int = 0) -> None:
        run_dir = self.run_dir(trial.trial_id)
        steps = self._epochs_done(trial.trial_id) * self.hypermodel.plan(config).steps_per_epoch
        where = f" from step {first_step:,}" if first_step else ""
        self.print_fn(f"[trial {trial.trial_id}] {_describe(config, self.hypermodel.space)}: {how}{where}, "
                      f"{steps:,} steps, val {rundir.best_val_loss(run_dir):.4f}, "
                      f"{self.budget.used:.0f} s of the budget used")

    def load_model(self, trial):
        from keras_makemore.training.run import load_model

        return load_model(self.run_dir(trial.trial_id) / rundir.MODEL_FILE)


def _timing(timer: _Timer, config: TrainConfig, params: int, wall: float) -> dict:
    return {"model": config.model, "work": config.batch_size * params, "params": params,
            "step_seconds": timer.step_seconds / timer.steps if timer.steps else None,
            "eval_seconds": timer.eval_seconds / timer.evals if timer.evals else None,
            "fixed_seconds": round(max(0.0, wall - timer.step_seconds - timer.eval_seconds), 3)}


def _describe(config: TrainConfig, space: dict) -> str:
    return f"{config.model}: " + ", ".join(f"{name} {_text(getattr(config, name))}" for name in space[config.model])


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def tune(
    config: TuneConfig,
    base: TrainConfig | Mapping[str, TrainConfig] | None,
    out_dir: str | os.PathLike,
    fixed: dict | None = None,
    print_fn: Callable[[str], None] = print,
) -> TuneResult:
    """Search for the `TrainConfig` with the lowest val loss within `config.budget`, into `out_dir`.

    Args:
        config: the search: model type, budget, tuner, trials' validation passes and patience.
        base: every setting the space does not search (data, split, seed,
            optimizer, ...), and the centre of its relative ranges (lr,
            batch size, steps): a mapping model type -> its `TrainConfig`
            (`config.base_configs(data=...)`: each model type's preset), one
            `TrainConfig` for every model type searched (its `model`
            replaced), or `None` for `config.base_configs()`.
        out_dir: the search directory; run again over it, the search continues.
        fixed: field -> a value not to search, or a tuple of values to try
            instead of the table's (see `search_space`).
        print_fn: where each trial's one-line report goes.

    Returns:
        A `TuneResult`. `out_dir` holds `tune.csv` (a row per trial),
        `tune.png` (val loss against parameters and against training seconds),
        `best/` (the best trial's run directory, for `sample`, `export`, ...)
        and KerasTuner's own files in `search/`.

    Example:

    ```python
    config = TuneConfig(model="all", budget="1h")
    result = tune(config, config.base_configs(data="words.txt"), "tunes/all")
    print(result.best_config)
    ```
    """
    config.validate()
    out_dir = Path(out_dir)
    # A data file is kept by its absolute path (the search may be continued from elsewhere); the packaged
    # names stay `None`, as in a `train` command without --data.
    bases = {model: dataclasses.replace(b, data=str(Path(b.data).resolve()) if b.data else None,
                                        early_stop=config.early_stop)
             for model, b in base_configs(config, base).items()}
    for b in bases.values():
        b.validate()
    space = search_space(config, bases, fixed)
    hyperband = config.tuner == "hyperband"
    hypermodel = TrainConfigHyperModel(bases, space, config.evals, hyperband=hyperband)
    check_data_file(hypermodel.data_path)  # a missing file is the user's error, said here
    _check_sizes(space, bases, hypermodel)  # and an unreadable one here: its corpus is opened (or streamed)
    settings = json.loads(json.dumps({
        "tune": {k: v for k, v in config.to_json().items() if k != "budget"},
        "bases": {model: b.to_json() for model, b in bases.items()},
        "space": _space_json(space), "data_sha256": rundir.file_sha256(hypermodel.data_path)}))
    rundir.create_run_dir(out_dir, argument="out_dir")
    with rundir.run_lock(out_dir, argument="out_dir", doing="searching"):  # one search writes a directory at a time
        return _search(config, out_dir, settings, bases, space, hypermodel, print_fn)


def _search(config: TuneConfig, out_dir: Path, settings: dict, bases: dict, space: dict,
            hypermodel: TrainConfigHyperModel, print_fn: Callable[[str], None]) -> TuneResult:
    """The search of `tune` into `out_dir`, which this process has locked."""
    state = _load_state(out_dir, settings)
    _check_search_files(out_dir)
    budget = _Budget(out_dir / TUNE_JSON, config.budget_seconds(), state)
    budget.save()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # KerasTuner prints "Reloading Tuner from ..."; we say more
            tuner = _Tuner(budget, print_fn, oracle=_oracle(config, bases[config.models()[0]].seed, hypermodel),
                           hypermodel=hypermodel, directory=str(out_dir), project_name=PROJECT, overwrite=False)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RuntimeError) as e:
        if isinstance(e, UserError):
            raise
        cause = e.__cause__ or e
        oracle = isinstance(e, RuntimeError) and isinstance(cause, KeyError)  # `Oracle.reload`'s own wrapping
        raise _damaged_search(out_dir, out_dir / PROJECT / ("oracle.json" if oracle else ""),
                              "KerasTuner cannot read it back: "
                              f"{type(cause).__name__} {str(cause)[:80]!r}") from None
    for trial_id, trial in tuner.oracle.trials.items():
        try:
            hypermodel.config(trial.hyperparameters)
        except (KeyError, TypeError, ValueError) as e:
            raise _damaged_search(out_dir, Path(tuner.get_trial_dir(trial_id)) / "trial.json",
                                  f"its values are not a trial of this search: {type(e).__name__}") from None
    if tuner.oracle.trials:
        print_fn(f"continuing the search in {out_dir}: {len(tuner.oracle.trials)} trials started before, "
                 f"{budget.used:.0f} s of the budget used")
    stopped = "done"
    try:
        search(tuner)
    except _BudgetSpent as e:
        stopped = "budget"
        print_fn(f"budget: {e}; stopping (a larger --budget continues the search)")
    budget.save()
    rows = _rows(tuner, space)
    _write_csv(out_dir / TUNE_CSV, rows)
    done = [r for r in rows if r["status"] == "COMPLETED"]
    best = min(done, key=lambda r: r[OBJECTIVE], default=None)
    best_config = best_dir = None
    if best is not None:
        best_config = hypermodel.config(tuner.oracle.get_trial(best["trial"]).hyperparameters)
        best_dir = out_dir / BEST_DIR
        if not (tuner.run_dir(best["trial"]) / rundir.MODEL_FILE).exists():
            _retrain(tuner, best["trial"])
        with atomic.atomic_dir(best_dir) as tmp:
            shutil.copytree(tuner.run_dir(best["trial"]), tmp, ignore=shutil.ignore_patterns(rundir.BACKUP_DIR))
        plot_tune(rows, out_dir / TUNE_PNG, title=f"tune {out_dir.resolve().name}: {config.tuner}, model "
                                                  f"{config.model}, {budget.used / 60:.1f} min of {config.budget}")
    return TuneResult(rows, best, best_config, best_dir, stopped, budget.used)


def _retrain(tuner: "_Tuner", trial_id: str) -> None:
    """Train the run of trial `trial_id`, whose model file is gone, again from step 0 to where it was.

    Minibatches are a function of `(seed, step)`: the run ends with the weights and history it had.
    """
    hp = tuner.oracle.get_trial(trial_id).hyperparameters
    run_dir = tuner.run_dir(trial_id)
    epochs = tuner._epochs_done(trial_id)
    config = tuner.hypermodel.config(hp)
    tuner.print_fn(f"[trial {trial_id}] {_describe(config, tuner.hypermodel.space)}: its {rundir.MODEL_FILE} is "
                   f"missing from {run_dir}; training it again, {epochs * tuner.hypermodel.plan(config).steps_per_epoch:,}"
                   " steps")
    keras.backend.clear_session()
    with atomic.atomic_dir(run_dir) as tmp:
        tuner.hypermodel.fit(hp, tuner.hypermodel.build(hp), tmp, epochs=epochs)


class _AtomicSaves:
    """Oracle state written atomically: KerasTuner writes its JSON files in place, and a search killed while
    writing one could not be continued. (`Oracle.save` and `Oracle._save_trial` are where it writes them.)"""

    def save(self):
        atomic.write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        atomic.write_json(Path(self._get_trial_dir(trial.trial_id)) / "trial.json", trial.get_state())


_ORACLES = {"hyperband": keras_tuner.oracles.HyperbandOracle,
            "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
            "random": keras_tuner.oracles.RandomSearchOracle,
            "grid": keras_tuner.oracles.GridSearchOracle}


def _oracle(config: TuneConfig, seed: int, hypermodel: TrainConfigHyperModel) -> keras_tuner.Oracle:
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    # A trial fails only when it diverges before its first validation pass; the budget bounds a run of them.
    kwargs = dict(objective=keras_tuner.Objective(OBJECTIVE, "min"), hyperparameters=hp, seed=seed,
                  tune_new_entries=False, allow_new_entries=False, max_consecutive_failed_trials=1_000_000)
    if config.tuner == "hyperband":
        # Rounds of 1/3, 1/9, ... of the trial's validation passes; repeated until the budget ends.
        kwargs |= dict(max_epochs=config.evals, factor=3, hyperband_iterations=None)
    elif config.tuner == "bayesian":
        kwargs |= dict(max_trials=config.max_trials or 10_000)
    kind = _ORACLES[config.tuner]
    try:
        oracle = type(kind.__name__, (_AtomicSaves, kind), {})(**kwargs)
    except ImportError:  # BayesianOptimization's own dependencies
        raise UserError(f"tuner {config.tuner!r} needs scipy and scikit-learn: install them with "
                        "pip install 'keras-makemore[tune]'", argument="tuner") from None
    if config.max_trials:
        oracle.max_trials = config.max_trials
    return oracle


def _space_json(space: dict) -> dict:
    return {model: {k: ({"log_range": [v.low, v.high]} if isinstance(v, LogRange) else list(v))
                    for k, v in rows.items()} for model, rows in space.items()}


def _load_state(out_dir: Path, settings: dict) -> dict:
    """`tune.json` of an earlier search in the directory (a `UserError` if it searched otherwise), or a new one."""
    path = out_dir / TUNE_JSON
    if not path.exists():
        if (out_dir / PROJECT).exists():
            raise UserError(f"out_dir {out_dir} holds a search without its {TUNE_JSON}: choose another out_dir",
                            argument="out_dir")
        return {"settings": settings, "seconds_used": 0.0, "trials": {}}
    state = _read_search_json(out_dir, path)
    _check_state(out_dir, state)
    if state["settings"] != settings:
        old, new = _flatten(state["settings"]), _flatten(settings)
        differences = [f"{k} {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
                       if old.get(k) != new.get(k)]
        raise UserError(f"out_dir {out_dir} was searched with other settings ({'; '.join(differences)}): rerun "
                        "with the original settings (only --budget may change), or choose another out_dir",
                        argument="out_dir")
    return state


def _damaged_search(out_dir: Path, path: Path, problem: str) -> UserError:
    return UserError(f"{path} of the search in {out_dir} is damaged ({problem}): delete {out_dir} to search again "
                     "from the start, or choose another out_dir", argument="out_dir")


def _read_search_json(out_dir: Path, path: Path) -> dict:
    """A JSON object of the search directory; a `UserError` naming the file if it is not one."""
    rundir.check_file(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _damaged_search(out_dir, path, "not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise _damaged_search(out_dir, path, f"a JSON object is expected, got {type(obj).__name__}")
    return obj


def _check_state(out_dir: Path, state: dict) -> None:
    """`tune.json`'s fields: settings, a number of seconds, and a timing (an object of numbers) per trial."""
    path = out_dir / TUNE_JSON
    if not isinstance(state.get("settings"), dict):
        raise _damaged_search(out_dir, path, "settings must be a JSON object")
    used = state.get("seconds_used")
    if type(used) not in (int, float) or not 0 <= used < math.inf:
        raise _damaged_search(out_dir, path, f"seconds_used must be a number of seconds, got {used!r}")
    trials = state.get("trials")
    if not isinstance(trials, dict):
        raise _damaged_search(out_dir, path, "trials must be a JSON object")
    for name, timing in trials.items():
        if not isinstance(timing, dict):
            raise _damaged_search(out_dir, path, f"trial {name!r} must be a JSON object, got {timing!r}")
        for key, value in timing.items():
            text = key in ("model", "previous")
            if not (value is None or (isinstance(value, str) if text else
                                      type(value) in (int, float) and 0 <= value < math.inf)):
                raise _damaged_search(out_dir, path, f"trial {name!r}: {key} must be "
                                      f"{'text' if text else 'a number'}, got {value!r}")


# The classes a KerasTuner file may name: its hyperparameters and their conditions. Anything else (a class that
# runs code) is refused before KerasTuner deserialises the file.
_HP_CLASSES = {"Boolean", "Choice", "Fixed", "Float", "Int", "Parent"}


def _check_search_files(out_dir: Path) -> None:
    """KerasTuner's files in `out_dir/search/` (oracle, tuner, each trial): JSON objects that name only
    hyperparameter classes; a `UserError` naming the first that is not."""
    project = out_dir / PROJECT
    files = [project / "oracle.json", project / "tuner0.json", *sorted(project.glob("trial_*/trial.json"))]
    for path in files:
        if not path.exists():
            continue
        obj = _read_search_json(out_dir, path)
        names = []
        _class_names(obj, names)
        odd = [n for n in names if n not in _HP_CLASSES]
        if odd:
            raise _damaged_search(out_dir, path, f"it names class {str(odd[0])[:60]!r}, which is no hyperparameter")
        if path.name == "trial.json" and not (isinstance(obj.get("hyperparameters"), dict)
                                              and isinstance(obj["hyperparameters"].get("values"), dict)):
            raise _damaged_search(out_dir, path, "it holds no hyperparameter values")


def _class_names(obj, found: list) -> None:
    if isinstance(obj, dict):
        if obj.get("module") is not None or obj.get("registered_name") is not None:  # Keras' importable form
            found.append(f"{obj.get('module')}.{obj.get('class_name')}")
        elif "class_name" in obj:
            found.append(obj["class_name"])
        for value in obj.values():
            _class_names(value, found)
    elif isinstance(obj, list):
        for value in obj:
            _class_names(value, found)


def _flatten(obj, prefix: str = "") -> dict:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`."""
    if not isinstance(obj, dict):
        return {prefix.rstrip("."): obj}
    return {k: v for key, value in obj.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}


def _rows(tuner: _Tuner, space: dict) -> list[dict]:
    """One row per trial that started: its hyperparameters, size, steps trained, best val loss, seconds."""
    timings = tuner.budget.state["trials"]
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        run_dir = tuner.run_dir(trial_id)
        if not run_dir.exists():  # created, not started: it did not fit in the budget
            continue
        hp = trial.hyperparameters
        config = tuner.hypermodel.config(hp)
        previous = hp.values.get("tuner/trial_id")
        seconds, link = 0.0, trial_id
        while link is not None:  # the run's training time: this trial's, and the rounds it continues
            seconds += (timings.get(link) or {}).get("fit_seconds", 0.0)
            link = (timings.get(link) or {}).get("previous")
        row = {"trial": trial_id, "status": trial.status, "continues": previous or "", "model": config.model}
        for name in dict.fromkeys(name for rows_ in space.values() for name in rows_):
            row[name] = getattr(config, name) if name in space[config.model] else ""
        row |= {"params": tuner.hypermodel.parameters(config),
                "steps_trained": tuner._epochs_done(trial_id) * tuner.hypermodel.plan(config).steps_per_epoch,
                OBJECTIVE: round(rundir.best_val_loss(run_dir), 6),
                "train_seconds": round(seconds, 1)}
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(["trial", "status", "continues", "model", *(k for r in rows for k in r)]))
    atomic.write_csv(path, fields, rows)


def read_tune_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a `tune.csv`, numbers as numbers."""
    def number(text):
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return kind(text)
        return text
    return [{k: (v if k in ("trial", "continues") else number(v)) for k, v in row.items()}
            for row in rundir.read_csv_rows(path)]
