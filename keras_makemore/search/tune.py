"""`tune()`: a KerasTuner search for the `TrainConfig` with the lowest val loss within a wall-clock budget.

The search space is a table per model type, `TrainConfig` field -> values
(`search.space.TUNE_SPACE` and `TUNE_MODELS`), its relative ranges resolved
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
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

from keras_makemore import atomic
from keras_makemore.analysis.plots import plot_tune
from keras_makemore.data.reading import check_data_file
from keras_makemore.errors import UserError
from keras_makemore.search.budget import Budget, BudgetSpent
from keras_makemore.search.files import (
    BEST_DIR,
    PROJECT,
    TUNE_CSV,
    TUNE_JSON,
    TUNE_PNG,
    check_search_files,
    damaged_search,
    load_state,
    space_json,
    trial_rows,
    write_tune_csv,
)
from keras_makemore.search.hypermodel import OBJECTIVE, TrainConfigHyperModel, base_configs, check_sizes, search_space
from keras_makemore.search.space import TuneConfig
from keras_makemore.search.tuner import SearchTuner, make_oracle, retrain_trial, search
from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig


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
    check_sizes(space, bases, hypermodel)  # and an unreadable one here: its corpus is opened (or streamed)
    settings = json.loads(json.dumps({
        "tune": {k: v for k, v in config.to_json().items() if k != "budget"},
        "bases": {model: b.to_json() for model, b in bases.items()},
        "space": space_json(space), "data_sha256": rundir.file_sha256(hypermodel.data_path)}))
    rundir.create_run_dir(out_dir, argument="out_dir")
    with rundir.run_lock(out_dir, argument="out_dir", doing="searching"):  # one search writes a directory at a time
        return _search(config, out_dir, settings, bases, space, hypermodel, print_fn)


def _search(config: TuneConfig, out_dir: Path, settings: dict, bases: dict, space: dict,
            hypermodel: TrainConfigHyperModel, print_fn: Callable[[str], None]) -> TuneResult:
    """The search of `tune` into `out_dir`, which this process has locked."""
    state = load_state(out_dir, settings)
    check_search_files(out_dir)
    budget = Budget(out_dir / TUNE_JSON, config.budget_seconds(), state)
    budget.save()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # KerasTuner prints "Reloading Tuner from ..."; we say more
            tuner = SearchTuner(budget, print_fn, oracle=make_oracle(config, bases[config.models()[0]].seed, hypermodel),
                           hypermodel=hypermodel, directory=str(out_dir), project_name=PROJECT, overwrite=False)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RuntimeError) as e:
        if isinstance(e, UserError):
            raise
        cause = e.__cause__ or e
        oracle = isinstance(e, RuntimeError) and isinstance(cause, KeyError)  # `Oracle.reload`'s own wrapping
        raise damaged_search(out_dir, out_dir / PROJECT / ("oracle.json" if oracle else ""),
                              "KerasTuner cannot read it back: "
                              f"{type(cause).__name__} {str(cause)[:80]!r}") from None
    for trial_id, trial in tuner.oracle.trials.items():
        try:
            hypermodel.config(trial.hyperparameters)
        except (KeyError, TypeError, ValueError) as e:
            raise damaged_search(out_dir, Path(tuner.get_trial_dir(trial_id)) / "trial.json",
                                  f"its values are not a trial of this search: {type(e).__name__}") from None
    if tuner.oracle.trials:
        print_fn(f"continuing the search in {out_dir}: {len(tuner.oracle.trials)} trials started before, "
                 f"{budget.used:.0f} s of the budget used")
    stopped = "done"
    try:
        search(tuner)
    except BudgetSpent as e:
        stopped = "budget"
        print_fn(f"budget: {e}; stopping (a larger --budget continues the search)")
    budget.save()
    rows = trial_rows(tuner, space)
    write_tune_csv(out_dir / TUNE_CSV, rows)
    done = [r for r in rows if r["status"] == "COMPLETED"]
    best = min(done, key=lambda r: r[OBJECTIVE], default=None)
    best_config = best_dir = None
    if best is not None:
        best_config = hypermodel.config(tuner.oracle.get_trial(best["trial"]).hyperparameters)
        best_dir = out_dir / BEST_DIR
        if not (tuner.run_dir(best["trial"]) / rundir.MODEL_FILE).exists():
            retrain_trial(tuner, best["trial"])
        with atomic.atomic_dir(best_dir) as tmp:
            shutil.copytree(tuner.run_dir(best["trial"]), tmp, ignore=shutil.ignore_patterns(rundir.BACKUP_DIR))
        plot_tune(rows, out_dir / TUNE_PNG, title=f"tune {out_dir.resolve().name}: {config.tuner}, model "
                                                  f"{config.model}, {budget.used / 60:.1f} min of {config.budget}")
    return TuneResult(rows, best, best_config, best_dir, stopped, budget.used)
