"""Find a good learning rate: sweep it over a range of rates, one training step at each.

The procedure of Smith (2015) and makemore part 2: raise the learning rate
exponentially from tiny to huge, one step at each rate, record the loss, and
pick a rate in the steep, low part of the curve before the loss blows up. The
sweep trains the model being swept; `LRFinder` puts weights and optimizer state
back afterwards, so the next `fit` starts exactly where it would have.
"""

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_makemore import atomic
from keras_makemore.engine import learning_rate_setting
from keras_makemore.errors import UserError

MODES = ("exponential", "linear")
PNG_FILE, CSV_FILE, JSON_FILE = "lr_find.png", "lr_find.csv", "lr_find.json"
RULES = {
    "valley": "half-way down the longest descent of the smoothed loss (fastai's default)",
    "steepest": "where the smoothed loss falls fastest against log(rate)",
    "minimum": "a tenth of the rate at the lowest smoothed loss",
}


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate and the rule that produced it.

    Args:
        name: the rule's name: `"valley"`, `"steepest"` or `"minimum"`.
        learning_rate: the suggested rate.
        step: the sweep step the suggestion was read at.
        loss: the smoothed loss at that step.
        rule: the rule, in words.
    """

    name: str
    learning_rate: float
    step: int
    loss: float
    rule: str


def suggest_learning_rates(
    learning_rates: Sequence[float],
    smoothed_losses: Sequence[float],
    skip_start: int = 0,
    skip_end: int = 0,
) -> dict[str, Suggestion]:
    """Read suggestions off a loss-against-rate curve, one per rule in `RULES`.

    Args:
        learning_rates: increasing rates, one per step.
        smoothed_losses: the (smoothed) loss at each rate.
        skip_start: leading points to ignore (the flat start is all noise).
        skip_end: trailing points to ignore (where the loss blows up).

    Returns:
        `{"valley": Suggestion, "steepest": ..., "minimum": ...}`, or `{}` when
        fewer than 3 finite points are left to read.

    Example:

    >>> rates = np.geomspace(1e-4, 1, 41)  # 10 a decade
    >>> losses = 3 - np.exp(-(np.log10(rates) + 1) ** 2)  # lowest at 1e-1
    >>> round(suggest_learning_rates(rates, losses)["minimum"].learning_rate, 4)
    0.01
    """
    rates = np.asarray(learning_rates, dtype=np.float64)
    losses = np.asarray(smoothed_losses, dtype=np.float64)
    stop = len(losses) - skip_end
    finite = np.isfinite(losses[:stop])
    if not finite.all():  # read nothing beyond the first non-finite loss
        stop = int(np.argmin(finite))
    if stop - skip_start < 3:
        return {}
    window = slice(skip_start, stop)
    r, l = rates[window], losses[window]
    picks = {
        "valley": _valley(l),
        "steepest": int(np.argmin(np.gradient(l, np.log(r)))),
        "minimum": int(np.argmin(l)),
    }
    out = {}
    for name, i in picks.items():
        rate = r[i] / 10 if name == "minimum" else r[i]
        out[name] = Suggestion(name, float(rate), skip_start + i, float(l[i]), RULES[name])
    return out


def _valley(losses: np.ndarray) -> int:
    """fastai's `valley`: the middle of the longest decreasing subsequence's span."""
    n = len(losses)
    longest = np.ones(n, dtype=np.int64)  # longest decreasing subsequence ending at i
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            longest[i] = longest[:i][higher].max() + 1
    end = int(np.argmax(longest))
    start = end - int(longest[end])
    third = (end - start) / 3
    return max(0, start + int(third) + int(third / 2))


@dataclasses.dataclass
class LRFinderResult:
    """What a learning-rate sweep recorded, and the rates it suggests.

    Args:
        learning_rates: the rate of each step.
        losses: the training loss of each step's minibatch, before its update.
        smoothed_losses: `losses` through a bias-corrected exponential moving average.
        suggestions: one `Suggestion` per rule.
        suggest: the rule `suggestion` answers with.
        stop_reason: `"completed"`, `"diverged"`, `"non-finite loss"` or `"out of data"`.
        settings: the sweep's arguments.

    Example:

    ```python
    result = find_lr(model, train_ds)
    print(result.summary())
    plot_lr_find(result, "lr_find.png")
    model.optimizer.learning_rate = result.learning_rate
    ```
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggestions: dict[str, Suggestion]
    suggest: str
    stop_reason: str
    settings: dict[str, Any]

    @property
    def suggestion(self) -> Suggestion:
        """The suggestion of the chosen rule; a `UserError` if the sweep was too short to read."""
        if self.suggest not in self.suggestions:
            raise UserError(
                f"the learning-rate sweep recorded only {len(self.losses)} steps before it stopped "
                f"({self.stop_reason}), too few to suggest a rate: lower the start rate or sweep more steps"
            )
        return self.suggestions[self.suggest]

    @property
    def learning_rate(self) -> float:
        """The suggested learning rate."""
        return self.suggestion.learning_rate

    def summary(self) -> str:
        """A few lines: what was swept, and each suggestion with its rule."""
        s = self.settings
        lines = [
            f"swept {len(self.losses)} of {s['num_steps']} steps, {s['mode']} from {s['start_lr']:.1e} "
            f"to {s['end_lr']:.1e} ({self.stop_reason}"
            + (f" at {self.learning_rates[-1]:.2e}" if self.stop_reason != "completed" else "") + ")",
        ]
        for name, sug in self.suggestions.items():
            mark = "*" if name == self.suggest else " "
            lines.append(f"{mark} {name:<9} {sug.learning_rate:9.3g}   loss {sug.loss:.4f}   {sug.rule}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def clean(values):
            return [float(v) if math.isfinite(v) else None for v in values]

        return {
            "settings": self.settings,
            "stop_reason": self.stop_reason,
            "suggest": self.suggest,
            "suggestions": {k: dataclasses.asdict(v) for k, v in self.suggestions.items()},
            "learning_rates": clean(self.learning_rates),
            "losses": clean(self.losses),
            "smoothed_losses": clean(self.smoothed_losses),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write `lr_find.png`, `lr_find.csv` and `lr_find.json` into `directory`."""
        directory = Path(directory)
        from keras_makemore.analysis.plots import plot_lr_find

        plot_lr_find(self, directory / PNG_FILE)
        self.save_csv(directory / CSV_FILE)
        self.save_json(directory / JSON_FILE)

    def save_json(self, path: str | os.PathLike) -> None:
        """Write everything, non-finite losses as `null`."""
        atomic.write_json(path, self.to_json())

    def save_csv(self, path: str | os.PathLike) -> None:
        """Write one row per step: `step,learning_rate,loss,smoothed_loss`."""
        rows = ({"step": i, "learning_rate": f"{rate:.6g}", "loss": f"{loss:.6g}", "smoothed_loss": f"{smooth:.6g}"}
                for i, (rate, loss, smooth) in enumerate(zip(self.learning_rates, self.losses, self.smoothed_losses)))
        atomic.write_csv(path, ["step", "learning_rate", "loss", "smoothed_loss"], rows)


class _SweepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The sweep's rates as a schedule, for optimizers whose own rate is a schedule."""

    def __init__(self, rates: np.ndarray, first_iteration: int):
        self.rates = tf.constant(rates, tf.float32)
        self.first_iteration = first_iteration

    def __call__(self, step):
        i = tf.cast(step, tf.int64) - self.first_iteration
        return tf.gather(self.rates, tf.clip_by_value(i, 0, len(self.rates) - 1))

    def get_config(self):
        return {"rates": self.rates.numpy().tolist(), "first_iteration": self.first_iteration}


class LRFinder(keras.callbacks.Callback):
    """Sweep the learning rate inside `model.fit`, one step per rate, and suggest one.

    At step `i` of the sweep the optimizer runs at rate `start_lr *
    (end_lr / start_lr) ** (i / (num_steps - 1))` (or evenly spaced rates with
    `mode="linear"`); the callback records the loss of each minibatch, stops the
    fit after `num_steps` steps or when the loss diverges, then puts the model's
    variables and the optimizer's state and learning rate (or schedule) back as
    they were before the fit. Works with any compiled Keras model and optimizer,
    under a `tf.distribute` strategy too. It needs one loss per step, so the
    model must be compiled with `steps_per_execution=1`; `find_lr` sees to that.

    Args:
        start_lr: the first rate, > 0.
        end_lr: the last rate, > `start_lr`.
        num_steps: steps (= rates) of the sweep.
        mode: `"exponential"` (rates evenly spaced on a log scale) or `"linear"`.
        smoothing: `beta` of the bias-corrected moving average of the loss, in
            [0, 1); 0 for none. Default `1 - 50 / num_steps` within [0.5, 0.98]:
            the average spans 2% of the sweep, so it lags the rate by about
            that much (a fixed 0.98 lags 49 steps, half of a 100-step sweep).
        diverge_factor: stop once the smoothed loss exceeds this many times
            its lowest value so far (while that is positive); `None` to sweep
            on. A NaN or infinite loss always stops the sweep.
        suggest: the rule of `result.suggestion`: `"valley"`, `"steepest"` or `"minimum"`.
        skip_start: leading steps the suggestions ignore; default a tenth of `num_steps`.
        skip_end: trailing steps the suggestions ignore (the blow-up).

    After the fit, `finder.result` holds an `LRFinderResult`.

    Example:

    ```python
    model.compile(optimizer=keras.optimizers.SGD(), loss="mse")
    finder = LRFinder(start_lr=1e-6, end_lr=1.0, num_steps=100)
    model.fit(train_ds.repeat(), steps_per_epoch=100, callbacks=[finder])
    print(finder.result.summary())
    model.optimizer.learning_rate = finder.result.learning_rate
    model.fit(train_ds, epochs=10)
    ```
    """

    def __init__(
        self,
        start_lr: float = 1e-7,
        end_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        smoothing: float | None = None,
        diverge_factor: float | None = 4.0,
        suggest: str = "valley",
        skip_start: int | None = None,
        skip_end: int = 5,
    ):
        super().__init__()
        if not (0 < start_lr < end_lr and math.isfinite(end_lr)):
            raise UserError(f"start_lr must be above 0 and below end_lr, got start_lr={start_lr} and end_lr={end_lr}: "
                            "e.g. 1e-7 and 10", argument="start_lr")
        if num_steps < 5:
            raise UserError(f"num_steps must be at least 5, got {num_steps}: sweep 100 steps or more",
                            argument="num_steps")
        if mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", argument="mode")
        if smoothing is None:
            smoothing = min(0.98, max(0.5, 1 - 50 / num_steps))
        if not 0 <= smoothing < 1:
            raise UserError(f"smoothing must be in [0, 1), got {smoothing}: 0.98 is usual, 0 turns it off",
                            argument="smoothing")
        if diverge_factor is not None and not diverge_factor > 1:
            raise UserError(f"diverge_factor must be above 1, got {diverge_factor}: 4 is usual, None turns it off",
                            argument="diverge_factor")
        if suggest not in RULES:
            raise UserError(f"suggest must be one of {', '.join(RULES)}, got {suggest!r}", argument="suggest")
        self.settings = {
            "start_lr": float(start_lr), "end_lr": float(end_lr), "num_steps": int(num_steps), "mode": mode,
            "smoothing": float(smoothing), "diverge_factor": diverge_factor,
            "skip_start": num_steps // 10 if skip_start is None else int(skip_start), "skip_end": int(skip_end),
        }
        self.suggest = suggest
        space = np.geomspace if mode == "exponential" else np.linspace
        # float32, so the rates recorded are the rates the optimizer used.
        self.rates = space(start_lr, end_lr, num_steps).astype(np.float32)
        self.result: LRFinderResult | None = None
        self._saved = None

    def on_train_begin(self, logs=None):
        model = self.model
        if getattr(model, "steps_per_execution", 1) != 1:
            raise UserError(
                f"LRFinder needs the loss of every step, but the model runs {model.steps_per_execution} steps "
                "per call: compile it with steps_per_execution=1 for the sweep, or use find_lr(), which does"
            )
        # The optimizer that owns the rate: a LossScaleOptimizer wraps another.
        self._optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        self._state = list({id(v): v for v in model.variables + model.optimizer.variables
                            + self._optimizer.variables}.values())
        self._losses, self._smoothed = [], []
        self._average, self._best = 0.0, math.inf
        self._stop_reason = "out of data"
        schedule = learning_rate_setting(self._optimizer)
        self._saved = ([v.numpy() for v in self._state], schedule)
        self._settable = isinstance(schedule, keras.Variable)
        if not self._settable:
            # A schedule's rate cannot be set: run the sweep as a schedule of its own.
            self._optimizer.learning_rate = _SweepSchedule(self.rates, int(self._optimizer.iterations.numpy()))
            model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()  # so the logged loss is this step's, not the epoch's running mean
        if self._settable:
            self._optimizer.learning_rate = self.rates[len(self._losses)]

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        beta = self.settings["smoothing"]
        self._average = beta * self._average + (1 - beta) * loss
        smoothed = self._average / (1 - beta ** (len(self._losses) + 1))
        self._losses.append(loss)
        self._smoothed.append(smoothed)
        self._best = min(self._best, smoothed)
        factor = self.settings["diverge_factor"]
        if not math.isfinite(smoothed):
            self._stop_reason = "non-finite loss"
        elif factor is not None and len(self._losses) > 1 and 0 < self._best < smoothed / factor:
            self._stop_reason = "diverged"
        elif len(self._losses) == len(self.rates):
            self._stop_reason = "completed"
        else:
            return
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        n = len(self._losses)
        rates = self.rates[:n].astype(np.float64)
        smoothed = np.array(self._smoothed)
        s = self.settings
        self.result = LRFinderResult(
            learning_rates=rates,
            losses=np.array(self._losses),
            smoothed_losses=smoothed,
            suggestions=suggest_learning_rates(rates, smoothed, s["skip_start"], s["skip_end"]),
            suggest=self.suggest,
            stop_reason=self._stop_reason,
            settings=dict(s),
        )
        self._restore()

    def _restore(self) -> None:
        """Put the model and optimizer back as they were before the sweep; once."""
        if self._saved is None:
            return
        values, schedule = self._saved
        self._saved = None
        if not self._settable:
            self._optimizer.learning_rate = schedule
            self.model.make_train_function(force=True)
        for variable, value in zip(self._state, values):
            variable.assign(value)


def find_lr(
    model: keras.Model,
    dataset,
    y=None,
    *,
    batch_size: int | None = None,
    verbose: int | str = 0,
    **finder_args,
) -> LRFinderResult:
    """Run a learning-rate sweep on a compiled model and return what it found.

    The model and its optimizer are left exactly as they were, and so is
    `steps_per_execution` (the sweep runs with 1, since it needs every loss).

    Args:
        model: a compiled Keras model.
        dataset: a `tf.data.Dataset` of batches (repeated as needed), or
            inputs as `model.fit` takes them, with `y` and `batch_size`.
        y: targets, when `dataset` holds inputs only.
        batch_size: batch size for array inputs.
        verbose: Keras' progress display during the sweep.
        **finder_args: `LRFinder`'s arguments (`start_lr`, `end_lr`,
            `num_steps`, `mode`, `smoothing`, `diverge_factor`, `suggest`, ...);
            its defaults apply to the others.

    Returns:
        An `LRFinderResult`; `result.learning_rate` is the suggested rate.

    Example:

    ```python
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    result = find_lr(model, make_dataset(x_train, y_train, batch_size=32), start_lr=1e-4, end_lr=10)
    plot_lr_find(result, "lr_find.png")
    model.optimizer.learning_rate = result.learning_rate
    ```
    """
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise UserError("find_lr needs a compiled model: call model.compile(optimizer=..., loss=...) first")
    finder = LRFinder(**finder_args)
    num_steps = finder.settings["num_steps"]
    saved_steps_per_execution = model.steps_per_execution
    model.steps_per_execution = 1
    model.make_train_function(force=True)
    try:
        if isinstance(dataset, tf.data.Dataset):
            model.fit(dataset.repeat(), epochs=1, steps_per_epoch=num_steps, callbacks=[finder], verbose=verbose,
                      shuffle=False)  # a Dataset is shuffled by its own pipeline
        else:
            model.fit(dataset, y, batch_size=batch_size, epochs=num_steps, callbacks=[finder], verbose=verbose)
    finally:
        finder._restore()  # fit skips on_train_end when it raises
        model.steps_per_execution = saved_steps_per_execution
        model.make_train_function(force=True)
    if not len(finder.result.losses):
        raise UserError("the learning-rate sweep ran no steps: the data is empty")
    return finder.result
