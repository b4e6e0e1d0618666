"""The run directory: its files, its lock, and its life (started, checked, reopened to resume, finished).

A run directory holds `config.json` (the `TrainConfig`, the data's path and
sha256, the vocabulary size and the step plan), `vocab.json`, `model.keras`
(the best-validation model), `history.csv` (one row per validation pass),
`history.json` once training finished, and `backup/` while it has not.
`start_run_dir` makes one, `config_to_resume` and `check_data_unchanged`
reopen one, `finish_run_dir` closes it; `run_lock` keeps every other process
out meanwhile. No TensorFlow is imported.
"""

import contextlib
import csv
import hashlib
import json
import math
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Iterator

from keras_makemore import atomic
from keras_makemore.data.reading import check_data_file
from keras_makemore.errors import UserError
from keras_makemore.training.config import MAX_STEPS, StepPlan, TrainConfig, config_differences

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
MODEL_FILE = "model.keras"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
BACKUP_DIR = "backup"
TENSORBOARD_DIR = "tensorboard"
# MAX_STEPS (config.py) bounds the step counts read from a file: `TrainConfig.validate` and `plan_steps` refuse
# more, so a run started within it is never called damaged later.
# A bound for the JSON and CSV files of a run: a vocabulary of every Unicode character is 8 MB of JSON, a
# history of 10^6 validation passes 100 MB of CSV.
MAX_TEXT_BYTES = 256 << 20
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def check_file(path: Path, limit: int | None = MAX_TEXT_BYTES) -> Path:
    """`path` if it is missing or a regular file (a link is followed) of at most `limit` bytes; a `UserError`
    naming it if not. Call it before opening a run's file: a FIFO would block the reader, a device never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path  # the caller says what is missing
    except OSError as e:
        raise UserError(f"{path} cannot be read ({e.strerror}): restore the run's own file, or retrain the run"
                        ) from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise UserError(f"{path} is {kind}, not a regular file: restore the run's own file, or retrain the run")
    if limit is not None and st.st_size > limit:
        raise UserError(f"{path} holds {st.st_size:,} bytes, more than the {limit:,} a run's {path.name} can "
                        "hold: restore the run's own file, or retrain the run")
    return path


def write_config(run_dir: Path, config: TrainConfig, plan: StepPlan, **info: Any) -> None:
    """Write `config.json`: the config, the step plan and `info` (data path and hash, vocabulary size, ...)."""
    atomic.write_json(run_dir / CONFIG_FILE, config.to_json() | info | {"step_plan": plan._asdict()})


def read_config(run_dir: Path) -> tuple[TrainConfig, dict]:
    """`config.json` as a `TrainConfig` and the whole JSON object; a `UserError` if it is missing or damaged."""
    path = check_file(run_dir / CONFIG_FILE)
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
    """The step plan recorded in `config.json`, checked to be whole and consistent."""
    plan = info.get("step_plan")
    if not isinstance(plan, dict) or set(plan) != set(StepPlan._fields):
        raise UserError("the run's config.json records no step plan: it was written by an older keras-makemore; "
                        "train the run again")
    if not all(type(v) is int and 1 <= v <= MAX_STEPS for v in plan.values()):
        raise _damaged(CONFIG_FILE, f"step_plan must hold whole numbers from 1 to {MAX_STEPS:,}, got {plan}")
    plan = StepPlan(**plan)
    if plan.epochs * plan.steps_per_epoch != plan.total_steps or plan.steps_per_epoch % plan.steps_per_execution:
        raise _damaged(CONFIG_FILE, f"step_plan does not add up: {plan._asdict()}")
    return plan


def info_int(info: dict, key: str, default: int, low: int, high: int) -> int:
    """Whole-number field `key` of `config.json`'s `info`, `default` when absent; `UserError` unless in [low, high]."""
    value = info.get(key, default)
    if type(value) is not int or not low <= value <= high:
        raise _damaged(CONFIG_FILE, f"{key} must be a whole number from {low:,} to {high:,}, got {value!r}")
    return value


def info_str(info: dict, key: str) -> str | None:
    """Text field `key` of `config.json`'s `info`, None when absent; `UserError` if it is not text."""
    value = info.get(key)
    if value is not None and not isinstance(value, str):
        raise _damaged(CONFIG_FILE, f"{key} must be text, got {type(value).__name__}")
    return value


def _damaged(name: str, problem: str) -> UserError:
    return UserError(f"{name} of the run is damaged ({problem}): retrain the run, or restore the file")


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV file as dicts of strings; `[]` if the file does not exist."""
    path = check_file(Path(path))
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [dict(r) for r in csv.DictReader(f)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise _damaged(path.name, f"not a UTF-8 CSV file: {type(e).__name__}") from None


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """The history of all sessions of the run, from `history.csv` (Keras' History holds only the last).

    Every row must have an `epoch` (0, 1, 2, ... in order) and a number in
    each column; a `UserError` names the row and column that do not.
    """
    rows = read_csv_rows(run_dir / HISTORY_CSV)
    keys = list(rows[0]) if rows else []
    if rows and ("epoch" not in keys or None in keys):
        raise _damaged(HISTORY_CSV, f"its header must start with epoch, got {keys[:4]}")
    history: dict[str, list] = {key: [] for key in keys}
    for number, row in enumerate(rows, 2):
        for key in keys:
            value = row.get(key)
            try:
                parsed = int(value) if key == "epoch" else float(value)
            except (TypeError, ValueError):
                raise _damaged(HISTORY_CSV, f"line {number}: {key} is not a number") from None
            history[key].append(parsed)
        if history["epoch"][-1] != number - 2:
            raise _damaged(HISTORY_CSV, f"line {number}: epoch {history['epoch'][-1]} where {number - 2} belongs")
    return history


def best_val_loss(run_dir: Path, before_epoch: int | None = None) -> float:
    """The lowest finite `val_loss` in the run's history (of epochs before `before_epoch`), `inf` if none."""
    history = read_history(run_dir)
    return min((v for e, v in zip(history.get("epoch", []), history.get("val_loss", []))
                if math.isfinite(v) and (before_epoch is None or e < before_epoch)), default=math.inf)


@contextlib.contextmanager
def run_lock(run_dir: Path, argument: str = "run_dir", doing: str = "training or exporting",
             wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on the run directory (a `flock` on the directory itself) for the block.

    A second process training or exporting the same run gets a `UserError` at
    once (saying the directory is busy, `doing` what, named as `argument`); the
    lock goes with the process, so a killed run never leaves one behind. A
    directory that does not exist yet cannot be locked: the block gets False.
    A `tune` search directory is locked the same way. With `wait`, a lock
    held by another process is waited for instead.
    """
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; runs there are not locked
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise UserError(f"{argument} {run_dir} is busy: another process is {doing} it; wait for it to "
                                "end, or stop it first", argument=argument) from None
        yield True
    finally:
        os.close(fd)


def read_finished_history(run_dir: Path) -> dict:
    """`history.json` of a finished run as a dict of lists of numbers (and the training time), `{}` if absent."""
    path = check_file(run_dir / HISTORY_JSON)
    if not path.exists():
        return {}
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _damaged(HISTORY_JSON, "not UTF-8 JSON") from None
    numbers = (int, float)
    if not isinstance(history, dict) or not all(
            isinstance(v, numbers) and not isinstance(v, bool) if k == "train_seconds_last_session"
            else isinstance(v, list) and all(isinstance(x, numbers) and not isinstance(x, bool) for x in v)
            for k, v in history.items()):
        raise _damaged(HISTORY_JSON, "it must map each log to a list of numbers")
    return history


def write_history(run_dir: Path, history: dict, train_seconds: float) -> None:
    """Write `history.json`, which marks the run as finished."""
    atomic.write_json(run_dir / HISTORY_JSON, history | {"train_seconds_last_session": round(train_seconds, 3)})


def create_run_dir(run_dir: Path, argument: str = "run_dir") -> None:
    """Create `run_dir` (and its parents) and check that it can be written; a `UserError` naming `argument` if not."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{argument} {run_dir} cannot be written: {e.strerror}; choose another {argument}",
                        argument=argument) from None


def check_new_run_dir(run_dir: Path) -> None:
    """A `UserError` if `run_dir` already holds a run, finished or interrupted."""
    if (run_dir / BACKUP_DIR).exists() and not (run_dir / HISTORY_JSON).exists():
        raise UserError(f"run_dir {run_dir} holds an interrupted run: continue it with resume=True, "
                        "or choose another run_dir", argument="run_dir")
    if (run_dir / CONFIG_FILE).exists():
        raise UserError(f"run_dir {run_dir} already holds a run: choose another run_dir", argument="run_dir")


def start_run_dir(run_dir: Path, config: TrainConfig, vocab, data_path: Path, plan: StepPlan,
                  max_word_length: int) -> None:
    """Write the vocabulary and the config (with the data's path and sha256) into the new run directory."""
    vocab.save(run_dir / VOCAB_FILE)
    write_config(run_dir, config, plan, data=str(data_path.resolve()), data_sha256=file_sha256(data_path),
                 vocab_size=vocab.size, max_word_length=max_word_length)


def config_to_resume(run_dir: Path, config: TrainConfig | None) -> TrainConfig:
    """The config of the interrupted run in `run_dir`; `config`, if given, must equal it."""
    if not (run_dir / CONFIG_FILE).exists():
        raise UserError(f"run_dir {run_dir} holds no run to resume (no {CONFIG_FILE}): check the path, or "
                        "start a new run there instead of resuming", argument="run_dir")
    if (run_dir / HISTORY_JSON).exists():
        raise UserError(f"run_dir {run_dir}: the run already finished, there is nothing to resume",
                        argument="run_dir")
    saved, _ = read_config(run_dir)
    changed = [f"{name} {was!r} (given {now!r})" for name, was, now in config_differences(saved, config or saved)]
    if changed:
        raise UserError(f"config differs from the run being resumed in {'; '.join(changed)}: a resumed run keeps "
                        "its own settings; resume without them, or train a new run", argument="config")
    if saved.strategy == "multiworker":
        raise UserError("a multi-worker run cannot be resumed: its workers' checkpoints are not kept; "
                        "train again into a new run_dir", argument="run_dir")
    return saved


def check_data_unchanged(run_dir: Path, data_path: Path) -> None:
    """Refuse to resume on data other than the run's: its split, vocabulary and minibatches would all differ."""
    _, info = read_config(run_dir)
    recorded = info.get("data_sha256")
    if recorded is not None and file_sha256(check_data_file(data_path)) != recorded:
        raise UserError(f"data file {data_path} changed since the run started (its sha256 differs from the one in "
                        f"{CONFIG_FILE}): a resumed run must train on the same words; put the original file "
                        "back, or train a new run on the changed file", argument="data")


def finish_run_dir(run_dir: Path, train_seconds: float) -> dict[str, list[float]]:
    """Write `history.json` (the run is finished), then drop the checkpoint; return the history."""
    history = read_history(run_dir)
    # The checkpoint is kept until history.json is written, so that a failure at that write can still be resumed.
    write_history(run_dir, history, train_seconds)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
    return history


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
