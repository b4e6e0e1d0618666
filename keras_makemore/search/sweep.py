"""A grid of hyperparameters, one real training run per cell, summarised in a CSV and a plot.

The grid is searched by KerasTuner's `GridSearch` oracle. Each cell (block
size x embedding size x hidden units) is a `train()` run in its own
subdirectory, with the same seed, data and step budget as every other cell.
A cell that finished leaves a `cell.json` with its results; a sweep started
again over the same directory reuses those, resumes a cell that was
interrupted after a checkpoint, and trains the rest.
"""

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import keras
import keras_tuner

from keras_makemore import atomic
from keras_makemore.analysis.evaluation import evaluate_splits, fit_verdict
from keras_makemore.analysis.plots import plot_sweep
from keras_makemore.data.reading import load_names
from keras_makemore.errors import UserError
from keras_makemore.search.tuner import reraise_trial_errors, search
from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig, config_differences
from keras_makemore.training.recipe import train
from keras_makemore.training.run import Run
from keras_makemore.training.rundir import BACKUP_DIR, CONFIG_FILE, HISTORY_JSON, read_config, step_plan
from keras_makemore.training.threads import set_intra_op_threads

SWEEP_CSV = "sweep.csv"
SWEEP_PNG = "sweep.png"
CELL_FILE = "cell.json"
COLUMNS = ("cell", "block_size", "embed_dim", "hidden_units", "params", "steps",
           "train_loss", "val_loss", "gap", "verdict", "wall_seconds")


def sweep(
    base: TrainConfig,
    out_dir: str | os.PathLike,
    hidden_units: Sequence[int],
    embed_dims: Sequence[int],
    block_sizes: Sequence[int],
    print_fn: Callable[[str], None] = print,
) -> list[dict]:
    """Train one run per grid cell into `out_dir` and write `sweep.csv` and `sweep.png` there.

    Args:
        base: every setting but the three grid axes (steps, seed, data, optimizer, ...).
        out_dir: the sweep directory; one subdirectory per cell.
        hidden_units, embed_dims, block_sizes: the values of each grid axis.
        print_fn: where the one-line progress report of each cell goes.

    Returns:
        One row per cell, as in the CSV: the cell's settings, parameter count,
        step budget, train and val loss (full splits, best checkpoint), the
        relative gap, the verdict (`underfitting`, `balanced` or `overfitting`)
        and the wall-clock seconds of its training.

    Example:

    ```python
    from keras_makemore.search.sweep import sweep

    rows = sweep(TrainConfig(steps=20_000), "sweeps/first", hidden_units=[100, 200], embed_dims=[2, 10], block_sizes=[3])
    best = min(rows, key=lambda r: r["val_loss"])
    ```
    """
    out_dir = Path(out_dir)
    rundir.create_run_dir(out_dir, argument="out_dir")  # a file, or a path under one, is refused before any cell trains
    # Threads are fixed for the process at its first training: the first cell's own choice would hold for
    # every cell, so the cells take TensorFlow's default unless `base` names a number, or the threads this
    # process already runs TensorFlow with (a notebook that trained before).
    threads = set_intra_op_threads(0, explicit=False) if base.threads is None else base.threads
    base = dataclasses.replace(base, data=str(Path(base.data or load_names()).resolve()), threads=threads)
    axes = {"block_size": block_sizes, "embed_dim": embed_dims, "hidden_units": hidden_units}
    grid = keras_tuner.HyperParameters()
    for name, values in axes.items():  # GridSearch varies the last axis fastest: hidden units, as the lesson does
        grid.Choice(name, list(dict.fromkeys(values)), ordered=True)
    cells = math.prod(len(set(values)) for values in axes.values())
    oracle = keras_tuner.oracles.GridSearchOracle(objective=keras_tuner.Objective("val_loss", "min"),
                                                  hyperparameters=grid, allow_new_entries=False)
    # The cells' own directories are the sweep's state (a cell resumes from its checkpoint), so
    # KerasTuner's oracle is built afresh each time, in a directory of its own.
    with tempfile.TemporaryDirectory(prefix="sweep-oracle-") as oracle_dir:
        grid_tuner = _GridTuner(base, out_dir, cells, print_fn, oracle=oracle, directory=oracle_dir,
                                project_name="grid")
        search(grid_tuner)
    rows = grid_tuner.rows
    plot_sweep(rows, out_dir / SWEEP_PNG, title=f"Sweep {out_dir.resolve().name}: {base.steps:,} steps per cell, "
                                                 f"{base.optimizer}, seed {base.seed}")
    return rows


class _GridTuner(keras_tuner.engine.base_tuner.BaseTuner):
    """KerasTuner's runner of trials, one grid cell each: a `train()` run in `out_dir/<cell>`."""

    def __init__(self, base: TrainConfig, out_dir: Path, cells: int, print_fn, **kwargs):
        super().__init__(**kwargs)
        self.base, self.out_dir, self.cells, self.print_fn = base, out_dir, cells, print_fn
        self.rows: list[dict] = []

    def run_trial(self, trial, *args, **kwargs):
        with reraise_trial_errors():
            values = trial.hyperparameters.values
            config = dataclasses.replace(self.base, **values)
            config.validate()
            name = f"block{config.block_size}-embed{config.embed_dim}-hidden{config.hidden_units}"
            row, how = _run_cell(config, self.out_dir / name)
            self.rows.append(row)
            atomic.write_csv(self.out_dir / SWEEP_CSV, list(COLUMNS), self.rows)
            self.print_fn(f"[{len(self.rows)}/{self.cells}] {name}: {how}; {row['params']:,} params, "
                          f"train {row['train_loss']:.4f}, val {row['val_loss']:.4f}, {row['verdict']}, "
                          f"{row['wall_seconds']:.1f} s")
            return {"val_loss": row["val_loss"]}


def _run_cell(config: TrainConfig, cell_dir: Path) -> tuple[dict, str]:
    """Finish the cell in `cell_dir` however far it got; return its row and what was done."""
    if (cell_dir / CELL_FILE).exists():
        done = json.loads((cell_dir / CELL_FILE).read_text(encoding="utf-8"))
        _check_same_settings(config, TrainConfig.from_json(done["config"]), cell_dir)
        return done["row"], "done before, skipped"
    if (cell_dir / CONFIG_FILE).exists():
        _check_same_settings(config, read_config(cell_dir)[0], cell_dir)
    keras.backend.clear_session()  # each cell builds new models and graphs: drop the previous cell's
    if (cell_dir / BACKUP_DIR).exists():
        train(config, cell_dir, verbose=0, resume=True)
        how = "resumed and trained"
    elif (cell_dir / HISTORY_JSON).exists():
        how = "trained before, evaluated"
    else:
        if (cell_dir / CONFIG_FILE).exists():  # stopped before its first checkpoint: nothing to keep
            shutil.rmtree(cell_dir)
        train(config, cell_dir, verbose=0)
        how = "trained"
    row = _evaluate_cell(cell_dir)
    atomic.write_json(cell_dir / CELL_FILE, {"config": config.to_json(), "row": row})
    return row, how


def _evaluate_cell(cell_dir: Path) -> dict:
    run = Run.load(cell_dir)
    losses = evaluate_splits(run.model, run.corpus(), ("train", "val"))
    train_loss, val_loss = losses["train"].nll, losses["val"].nll
    history = json.loads((cell_dir / HISTORY_JSON).read_text(encoding="utf-8"))
    return {
        "cell": cell_dir.name,
        "block_size": run.config.block_size,
        "embed_dim": run.config.embed_dim,
        "hidden_units": run.config.hidden_units,
        "params": run.model.count_params(),
        "steps": step_plan(run.info).total_steps,
        "train_loss": round(train_loss, 6),
        "val_loss": round(val_loss, 6),
        "gap": round((val_loss - train_loss) / train_loss, 4),
        "verdict": fit_verdict(train_loss, val_loss).split(":")[0],
        "wall_seconds": round(history["train_seconds_last_session"], 1),
    }


def _check_same_settings(config: TrainConfig, saved: TrainConfig, cell_dir: Path) -> None:
    differences = [f"{name} {was!r}, now {now!r}" for name, was, now in config_differences(saved, config)]
    if differences:
        raise UserError(f"out_dir {cell_dir.parent} was swept with other settings ({'; '.join(differences)}): "
                        "rerun the sweep with its original settings, or choose another out_dir", argument="out_dir")


def read_sweep_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of a `sweep.csv`, numbers as numbers."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kinds = {"block_size": int, "embed_dim": int, "hidden_units": int, "params": int, "steps": int,
             "train_loss": float, "val_loss": float, "gap": float, "wall_seconds": float}
    return [{k: kinds.get(k, str)(v) for k, v in row.items()} for row in rows]
