"""What `tune` and `sweep` search: the search space of every model type, the sweep's grid, and `TuneConfig`.

A trial of model type M starts from its base config (`TuneConfig.base_configs`:
M's own preset); its space is `TUNE_SPACE` (the optimizer's rows, relative to
that base) updated with M's own rows (`ModelType.search_space`, in M's module).
No TensorFlow is imported.
"""

import dataclasses
import re
from typing import NamedTuple

from keras_makemore.models import MODEL_NAMES, get_model_type
from keras_makemore.training.config import TrainConfig, check_setting, config_field
from keras_makemore.training.presets import PRESETS, preset_name

# The grid and step budget of `keras-makemore sweep` when none is given; every other setting is TrainConfig's.
SWEEP_GRID = {"hidden_units": (50, 100, 200), "embed_dim": (2, 10), "block_size": (3,)}
SWEEP_STEPS = 30_000


class LogRange(NamedTuple):
    """A search range for `keras-makemore tune`: `low` to `high` in steps of 2x.

    Over an integer field (`batch_size`, `steps`) it is the integers `low`,
    `2 low`, ... up to `high`.

    Args:
        low, high: the ends of the range; with `relative`, factors of the
            base config's value (the preset's learning rate, say).
        relative: whether `low` and `high` multiply the base value.
    """

    low: float
    high: float
    relative: bool = False


# The search space of `keras-makemore tune`: TrainConfig field -> the values to try (a tuple) or a `LogRange`,
# per model type. A trial of model type M starts from its base config (`TuneConfig.base_configs`: M's own preset),
# and its space is `TUNE_SPACE` (the optimizer's rows, relative to that base) updated with `TUNE_MODELS[M]`; a
# field without a row for M keeps its base value. `--model` takes the names of `TUNE_MODELS`, or `all`, which adds
# the model type itself to the search (KerasTuner conditional scopes: a trial has the rows of its model type only).
# `steps` is the run length; Hyperband takes its largest value.
TUNE_SPACE: dict[str, tuple | LogRange] = {
    "lr": LogRange(0.25, 4.0, relative=True),
    "batch_size": LogRange(0.5, 2.0, relative=True),
    "steps": LogRange(0.5, 2.0, relative=True),
}
# Each model type's rows, around its own preset, from its module: the preset's value, half and double it, within
# what a search of an hour on 2 cores can afford.
TUNE_MODELS: dict[str, dict[str, tuple | LogRange]] = {name: dict(get_model_type(name).search_space)
                                                       for name in MODEL_NAMES}
TUNERS = ("hyperband", "bayesian", "random", "grid")


@dataclasses.dataclass
class TuneConfig:
    """How `keras-makemore tune` searches; what it trains is a `TrainConfig` per trial.

    Args:
        model: a model type of `TUNE_MODELS`, or `"all"` to search over them.
        budget: wall-clock time of the whole search, e.g. `"15m"`, `"1h30m"`,
            `"90s"`; trials that would not end within it are not started.
        tuner: the KerasTuner search, one of `TUNERS`.
        preset: the `TrainConfig` preset the trials of the model type it is
            made for start from (`None`: each model type's own preset, see
            `preset_name`); the other model types keep their own.
        evals: validation passes per trial (Hyperband's rounds are counted in them).
        early_stop: each trial's early-stopping patience, in validation passes.
        max_trials: stop after this many trials (`None`: when the budget or the search ends).

    Example:

    >>> TuneConfig(budget="1h30m").budget_seconds()
    5400.0
    >>> TuneConfig(model="all", preset="mlp-best").base_configs()["mlp"].hidden_units
    768
    """

    model: str = config_field("mlp", "the model type to tune; all: search over the model types too",
                        choices=(*TUNE_MODELS, "all"))
    budget: str = config_field("15m", "wall-clock budget of the whole search, e.g. 15m, 1h30m, 90s; trials that cannot "
                         "end within it are not started", metavar="TIME")
    tuner: str = config_field("hyperband", "the KerasTuner search", choices=TUNERS)
    preset: str | None = config_field(None, "the preset the trials of its model type start from (lecture, best: mlp); the "
                                "other model types start from their own (default: each its own)",
                                choices=tuple(PRESETS))
    evals: int = config_field(10, "validation passes per trial", metavar="N")
    early_stop: int | None = config_field(3, "early-stopping patience of each trial, in validation passes",
                                    metavar="PATIENCE")
    max_trials: int | None = config_field(None, "stop after N trials (default: when the budget or the search ends)",
                                    metavar="N")

    def validate(self) -> None:
        """Raise a `UserError` naming the first field that cannot search."""
        for name in ("model", "tuner", "preset"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            check_setting(getattr(self, name) in choices or (name == "preset" and self.preset is None), name,
                   f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.preset is not None:
            made_for = TrainConfig.from_preset(self.preset).model
            check_setting(made_for in self.models(), "preset", f"{self.preset} was made for model {made_for}, which model "
                   f"{self.model} does not search: search model {made_for} or all, or leave the preset out")
        self.budget_seconds()
        check_setting(self.evals >= 1, "evals", f"must be at least 1, got {self.evals}")
        for name in ("early_stop", "max_trials"):
            value = getattr(self, name)
            check_setting(value is None or value >= 1, name, f"must be at least 1, got {value}")

    def models(self) -> tuple[str, ...]:
        """The model types searched."""
        return tuple(TUNE_MODELS) if self.model == "all" else (self.model,)

    def preset_of(self, model: str) -> str:
        """The preset the trials of `model` start from: `preset` if it was made for `model`, else `model`'s own."""
        if self.preset is not None and TrainConfig.from_preset(self.preset).model == model:
            return self.preset
        return preset_name(None, model)

    def base_configs(self, **overrides) -> dict[str, "TrainConfig"]:
        """Model type -> the `TrainConfig` its trials start from: its preset (`preset_of`), with `overrides`."""
        return {m: TrainConfig.from_preset(self.preset_of(m), **overrides | {"model": m}) for m in self.models()}

    def budget_seconds(self) -> float:
        """`budget` in seconds."""
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", self.budget.strip())
        check_setting(bool(self.budget.strip()) and parts is not None, "budget",
               f"must be a duration such as 15m, 1h30m or 90s, got {self.budget!r}")
        hours, minutes, seconds = (float(p or 0) for p in parts.groups())
        total = 3600 * hours + 60 * minutes + seconds
        check_setting(total > 0, "budget", f"must be longer than 0 seconds, got {self.budget!r}")
        return total

    def to_json(self) -> dict:
        return dataclasses.asdict(self)
