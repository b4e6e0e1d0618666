"""The KerasTuner tuner that runs trials as run directories, and the oracles it searches with."""

import contextlib
import dataclasses
import math
import shutil
import time
from pathlib import Path

import keras
import keras_tuner

from keras_makemore import atomic
from keras_makemore.errors import UserError
from keras_makemore.search.budget import Budget, BudgetSpent, StepTimer, timing
from keras_makemore.search.files import RUN_DIR
from keras_makemore.search.hypermodel import OBJECTIVE, TrainConfigHyperModel
from keras_makemore.search.space import TuneConfig
from keras_makemore.training import rundir
from keras_makemore.training.callbacks import (
    ValLoss,
)
from keras_makemore.training.config import TrainConfig, plan_steps
from keras_makemore.training.distribute import make_strategy
from keras_makemore.training.recipe import fit_minibatches


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


class SearchTuner(keras_tuner.Tuner):
    """Runs each trial into its own run directory, within the budget, and reports it in one line.

    A trial that would not end within the budget is not started. If the
    cheapest trial seen in this session would fit, it is skipped (KerasTuner
    counts it as failed) and the search goes on: over several model types the
    costs of the trials differ a hundredfold, and a large draw must not end the
    search while smaller ones fit. Otherwise, or after `MAX_SKIPS` skips in a
    row, the search ends.
    """

    MAX_SKIPS = 20

    def __init__(self, budget: Budget, print_fn, **kwargs):
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
                raise BudgetSpent(f"{max(0, left):.0f} s of the budget are left, less than the cheapest trial seen "
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
                raise BudgetSpent(f"trial {trial.trial_id} {why.removeprefix('it ')}")
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
        timer = StepTimer(chunk, lambda: None)
        fit_minibatches(prep, model, prep.minibatches(total_steps=plan.total_steps),
                        [ValLoss(model, prep.corpus, config.eval_max_examples), timer], epochs=1,
                        steps_per_epoch=plan.steps_per_epoch)
        self.budget.measure(f"probe {config.model}", timing(timer, config, self.hypermodel.parameters(config),
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
            timer = StepTimer(model.steps_per_execution, self.budget.save)
            result = self.hypermodel.fit(hp, model, run_dir, epochs=end, callbacks=[timer])
            if previous is not None:  # Hyperband continues a trial once: its checkpoint now lives on here
                shutil.rmtree(self.run_dir(previous) / rundir.BACKUP_DIR, ignore_errors=True)
            self.budget.measure(trial.trial_id, timing(timer, config, self.hypermodel.parameters(config),
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


def _describe(config: TrainConfig, space: dict) -> str:
    return f"{config.model}: " + ", ".join(f"{name} {_text(getattr(config, name))}" for name in space[config.model])


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def retrain_trial(tuner: "SearchTuner", trial_id: str) -> None:
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


def make_oracle(config: TuneConfig, seed: int, hypermodel: TrainConfigHyperModel) -> keras_tuner.Oracle:
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
