"""The flags of the commands, generated from the config objects: `TrainConfig`'s fields, `TuneConfig`'s and
`SamplingControls`'; and the config a command line asks for."""

import argparse
import dataclasses
import types
import typing

from keras_makemore.models import DEFAULT_MODEL
from keras_makemore.search.space import TUNE_MODELS, TUNE_SPACE, LogRange, TuneConfig
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import DEFAULT_PRESET, PRESETS, preset_name


class Parser(argparse.ArgumentParser):
    """argparse's parser, with its errors on one line, like every other error of the command."""

    def error(self, message):
        command = self.prog.removeprefix("keras-makemore").strip()
        self.exit(2, f"keras-makemore: error: {command + ': ' if command else ''}{message} "
                     f"(see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def lr_drop(text: str) -> tuple[int, float]:
    try:
        step, rate = text.split(":")
        return int(step), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected STEP:RATE such as 100000:0.01, got {text!r}") from None


def learning_rate(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 0.1, or auto, got {text!r}") from None


TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
MODEL_FIELDS = ("model", "data", "block_size", "embed_dim", "hidden_units", "layers", "heads", "dropout",
                 "direct_connections", "batch_size", "pack_words",
                 "optimizer", "weight_decay", "xla", "threads", "seed", "split_seed", "strategy")
SCHEDULE_FIELDS = ("steps", "epochs", "lr", "lr_schedule", "lr_drops", "eval_every", "eval_max_examples",
                    "early_stop")
SWEEP_FIELDS = ("data", "batch_size", "steps", "optimizer", "lr", "lr_schedule", "seed", "split_seed", "eval_every")


def flag(name: str, fields=TRAIN_FIELDS) -> str:
    return "--" + (fields[name].metadata["flag"] or name.replace("_", "-"))


def preset_values(name: str) -> str:
    """How `name` defaults: its value in each preset of the default model, or the one default they share.

    (The other models' presets are listed in docs/models.md, and their values in `train --model NAME` runs.)
    """
    default = TrainConfig().to_json()[name]  # field defaults, default factories included
    values = {preset: settings.get(name, default) for preset, settings in PRESETS.items()
              if settings.get("model", DEFAULT_MODEL) == DEFAULT_MODEL}
    if len(set(map(repr, values.values()))) > 1:
        return " (preset " + ", ".join(f"{preset}: {value}" for preset, value in values.items()) + ")"
    value = next(iter(values.values()))
    return "" if value in (None, False, []) else f" (default: {value})"


def value_type(field: dataclasses.Field) -> type:
    """The type of a dataclass field's values, None aside: `int` for `int | None`."""
    kinds = typing.get_args(field.type) if isinstance(field.type, types.UnionType) else (field.type,)
    return next(k for k in kinds if k is not type(None))


def add_config_flag(p, name: str, default=None, default_text: str | None = None, fields=TRAIN_FIELDS,
                     **overrides) -> None:
    """The flag of `TrainConfig` field `name` (or of `fields`), typed, with its help and choices from its metadata."""
    field = fields[name]
    meta = field.metadata
    kind = value_type(field)
    kwargs = dict(dest=name, default=default, metavar=meta["metavar"],
                  help=(meta["help"] + (preset_values(name) if default_text is None else default_text)).replace(
                      "%", "%%"))
    if kind is bool:
        kwargs.update(action=argparse.BooleanOptionalAction)  # --no-NAME turns off a preset's True
        del kwargs["metavar"]
    elif typing.get_origin(kind) is list:
        kwargs.update(type=lr_drop, action="append")
    elif meta["choices"]:
        kwargs.update(choices=meta["choices"], metavar=None)
    else:
        kwargs.update(type=kind)
    p.add_argument(flag(name, fields), *("--" + alias for alias in meta.get("aliases", ())), **(kwargs | overrides))


def add_model_flags(p) -> None:
    """`--preset` and the data, network and optimizer flags that `train` and `lr-find` share.

    They default to None, so that the preset's value, then `TrainConfig`'s, applies.
    """
    p.add_argument("--preset", choices=list(PRESETS),
                   help=f"named settings (default: the --model's own preset, or {DEFAULT_PRESET}); flags override them")
    for name in MODEL_FIELDS:
        add_config_flag(p, name)


def config_from_args(args) -> TrainConfig:
    """`TrainConfig` of the named preset, with every flag the user gave on top."""
    overrides = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k, None) is not None}
    if overrides.get("lr") == "auto":
        del overrides["lr"]
    return TrainConfig.from_preset(preset_name(getattr(args, "preset", None), overrides.get("model")), **overrides)


def add_source(p) -> None:
    """The model argument of `sample` and `score`, and `--trust-saved-model`."""
    p.add_argument("source", metavar="RUN_DIR|MODEL", help="run directory, .tflite file or SavedModel directory")
    p.add_argument("--trust-saved-model", action="store_true",
                   help="open a SavedModel that keras-makemore did not write (it runs its own graph: only for files you trust)")


def open_source(args):
    """The model of `sample` or `score`; errors about the run directory name the command's argument."""
    from keras_makemore.artifacts.reader import open_model

    args.argument_flags["run_dir"] = args.argument_flags["source"]
    return open_model(args.source, trust_saved_model=args.trust_saved_model)


def add_control_flag(p, field: dataclasses.Field) -> None:
    """The flag of `SamplingControls` field `field`, typed, with its help from the field's metadata."""
    default = "" if field.default in (None, "", 0) else f" (default: {field.default})"
    p.add_argument("--" + field.name.replace("_", "-"), type=value_type(field),
                   default=field.default, metavar=field.metadata["metavar"],
                   help=(field.metadata["help"] + default).replace("%", "%%"))


TUNE_FIELDS = {f.name: f for f in dataclasses.fields(TuneConfig)}
TUNE_ROWS = list(dict.fromkeys([*TUNE_SPACE, *(name for rows in TUNE_MODELS.values() for name in rows)]))


def searched(name: str) -> str:
    """What `tune` tries for field `name` by default, per model type: "mlp: 3 4 5; wavenet: 4 8 16"."""
    described = {}
    for model, rows in TUNE_MODELS.items():
        values = rows.get(name, TUNE_SPACE.get(name))
        if values is not None:
            text = (f"{values.low:g}x to {values.high:g}x the preset's, in steps of 2x" if isinstance(values, LogRange)
                    and values.relative else f"{values.low:g} to {values.high:g} in steps of 2x"
                    if isinstance(values, LogRange) else " ".join(map(str, values)))
            described.setdefault(text, []).append(model)
    if len(described) == 1 and len(next(iter(described.values()))) == len(TUNE_MODELS):
        return next(iter(described))
    return "; ".join(f"{', '.join(models)}: {text}" for text, models in described.items())
