"""The wall-clock budget of a search: speeds measured on the first steps of each model type, trials sized to fit."""

import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from keras_makemore import atomic
from keras_makemore.training.config import TrainConfig


class BudgetSpent(Exception):
    def __init__(self, message: str):
        super().__init__(message)


class Budget:
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


class StepTimer(keras.callbacks.Callback):
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


def timing(timer: StepTimer, config: TrainConfig, params: int, wall: float) -> dict:
    return {"model": config.model, "work": config.batch_size * params, "params": params,
            "step_seconds": timer.step_seconds / timer.steps if timer.steps else None,
            "eval_seconds": timer.eval_seconds / timer.evals if timer.evals else None,
            "fixed_seconds": round(max(0.0, wall - timer.step_seconds - timer.eval_seconds), 3)}
