"""The run directory's format: its file names, and reading and writing its config, step plan and history.

A run directory holds `config.json` (the `TrainConfig`, the data's path and
sha256, the vocabulary size and the step plan), `vocab.json`, `model.keras`
(the best-validation model), `history.csv` (one row per validation pass),
`history.json` once training finished, and `backup/` while it has not. No
TensorFlow is imported.
"""

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from keras_makemore import _atomic
from keras_makemore.config import StepPlan, TrainConfig
from keras_makemore.errors import UserError

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
MODEL_FILE = "model.keras"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"


def write_config(run_dir: Path, config: TrainConfig, plan: StepPlan, **info: Any) -> None:
    """Write `config.json`: the config, the step plan and `info` (data path and hash, vocabulary size, ...)."""
    _atomic.write_json(run_dir / CONFIG_FILE, config.to_json() | info | {"step_plan": plan._asdict()})


def read_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """`config.json` as a `TrainConfig` and the whole JSON object; a `UserError` if it is missing or damaged."""
    path = run_dir / CONFIG_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"run_dir {run_dir} has no {CONFIG_FILE}: it is not a keras-makemore run directory",
                        argument="run_dir") from None
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not JSON): retrain the run, or restore the file") from None
    try:
        return TrainConfig.from_json(info), info
    except UserError as e:
        raise UserError(f"{path} is corrupt ({e}): retrain the run, or restore the file") from None


def step_plan(info: dict) -> StepPlan:
    """The step plan recorded in `config.json`."""
    plan = info.get("step_plan")
    if not isinstance(plan, dict) or set(plan) != set(StepPlan._fields):
        raise UserError("the run's config.json records no step plan: it was written by an older keras-makemore; "
                        "train the run again")
    return StepPlan(**{k: int(v) for k, v in plan.items()})


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV file as dicts of strings; `[]` if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [dict(r) for r in csv.DictReader(f)]


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """The history of all sessions of the run, from `history.csv` (Keras' History holds only the last)."""
    rows = read_csv_rows(run_dir / HISTORY_CSV)
    history = {key: [float(r[key]) for r in rows] for key in (rows[0] if rows else {})}
    if rows:
        history["epoch"] = [int(e) for e in history["epoch"]]
    return history


def best_val_loss(run_dir: Path) -> float:
    """The lowest finite `val_loss` in the run's history, `inf` if none."""
    return min((v for v in read_history(run_dir).get("val_loss", []) if math.isfinite(v)), default=math.inf)


def write_history(run_dir: Path, history: dict, train_seconds: float) -> None:
    """Write `history.json`, which marks the run as finished."""
    _atomic.write_json(run_dir / HISTORY_JSON, history | {"train_seconds_last_session": round(train_seconds, 3)})
