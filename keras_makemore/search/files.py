"""The files of a search directory: the state of the search, KerasTuner's files checked before they are read back,
and the results table `tune.csv`."""

import contextlib
import json
import math
import os
from pathlib import Path

import keras_tuner

from keras_makemore import atomic
from keras_makemore.errors import UserError
from keras_makemore.search.hypermodel import OBJECTIVE
from keras_makemore.search.space import LogRange
from keras_makemore.training import rundir

TUNE_CSV = "tune.csv"
TUNE_PNG = "tune.png"
TUNE_JSON = "tune.json"
BEST_DIR = "best"
PROJECT = "search"
RUN_DIR = "run"


def space_json(space: dict) -> dict:
    return {model: {k: ({"log_range": [v.low, v.high]} if isinstance(v, LogRange) else list(v))
                    for k, v in rows.items()} for model, rows in space.items()}


def load_state(out_dir: Path, settings: dict) -> dict:
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


def damaged_search(out_dir: Path, path: Path, problem: str) -> UserError:
    return UserError(f"{path} of the search in {out_dir} is damaged ({problem}): delete {out_dir} to search again "
                     "from the start, or choose another out_dir", argument="out_dir")


def _read_search_json(out_dir: Path, path: Path) -> dict:
    """A JSON object of the search directory; a `UserError` naming the file if it is not one."""
    rundir.check_file(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise damaged_search(out_dir, path, "not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise damaged_search(out_dir, path, f"a JSON object is expected, got {type(obj).__name__}")
    return obj


def _check_state(out_dir: Path, state: dict) -> None:
    """`tune.json`'s fields: settings, a number of seconds, and a timing (an object of numbers) per trial."""
    path = out_dir / TUNE_JSON
    if not isinstance(state.get("settings"), dict):
        raise damaged_search(out_dir, path, "settings must be a JSON object")
    used = state.get("seconds_used")
    if type(used) not in (int, float) or not 0 <= used < math.inf:
        raise damaged_search(out_dir, path, f"seconds_used must be a number of seconds, got {used!r}")
    trials = state.get("trials")
    if not isinstance(trials, dict):
        raise damaged_search(out_dir, path, "trials must be a JSON object")
    for name, timing in trials.items():
        if not isinstance(timing, dict):
            raise damaged_search(out_dir, path, f"trial {name!r} must be a JSON object, got {timing!r}")
        for key, value in timing.items():
            text = key in ("model", "previous")
            if not (value is None or (isinstance(value, str) if text else
                                      type(value) in (int, float) and 0 <= value < math.inf)):
                raise damaged_search(out_dir, path, f"trial {name!r}: {key} must be "
                                      f"{'text' if text else 'a number'}, got {value!r}")


# The classes a KerasTuner file may name: its hyperparameters and their conditions. Anything else (a class that
# runs code) is refused before KerasTuner deserialises the file.
_HP_CLASSES = {"Boolean", "Choice", "Fixed", "Float", "Int", "Parent"}


def check_search_files(out_dir: Path) -> None:
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
            raise damaged_search(out_dir, path, f"it names class {str(odd[0])[:60]!r}, which is no hyperparameter")
        if path.name == "trial.json" and not (isinstance(obj.get("hyperparameters"), dict)
                                              and isinstance(obj["hyperparameters"].get("values"), dict)):
            raise damaged_search(out_dir, path, "it holds no hyperparameter values")


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


def trial_rows(tuner: keras_tuner.Tuner, space: dict) -> list[dict]:
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


def write_tune_csv(path: Path, rows: list[dict]) -> None:
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
