"""What defines a training run: `TrainConfig`, its validation, and the step plan that cuts it into epochs.

This module is the single source of every training default. The CLI's flags,
choices and help texts are generated from the fields' metadata here (the
per-model parts of the help from each `ModelType.hyperparameters`), so a
default changes in one place. No TensorFlow is imported.
"""

import dataclasses
import math
import types
import typing
from typing import Any, NamedTuple

from keras_makemore.errors import UserError
from keras_makemore.models import DEFAULT_MODEL, MODEL_NAMES, get_model_type, names_of_kind
from keras_makemore.models.base import MAX_BLOCK_SIZE, MAX_PARAMETERS, WINDOW, WORD
from keras_makemore.training.presets import PRESETS

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "step", "cosine")
XLA_MODES = ("auto", "on", "off")
STRATEGIES = ("default", "mirrored", "multiworker")
MAX_STEPS = 10**9  # 10^9 steps are years of training; the bound a run directory's step plan is read back with
MAX_SEED = 2**31 - 1  # seeds are int32, as `sample --seed`'s: from -2^31 to 2^31 - 1
MAX_THREADS = 256  # each thread reserves its stack: 100,000 hung the start, or crashed under a memory cap
# The characters of one minibatch (`batch_size` rows of `block_size + 1` tokens): 256x the `transformer`
# preset's. Minibatches are drawn 100 steps at a time (`data.windows.random_minibatches`), so this bounds that
# draw to about 200 MB, and a step's activations to a few GB.
MAX_BATCH_TOKENS = 2**18
__all__ = ["TrainConfig", "StepPlan", "plan_steps", "config_differences", "config_field", "MAX_BLOCK_SIZE",
           "MAX_PARAMETERS"]


def config_field(default, help: str, flag: str | None = None, metavar: str | None = None, choices=None,
                 aliases: tuple[str, ...] = (), **kwargs):
    """A dataclass field whose metadata the CLI turns into a flag (`flag` defaults to the field's name;
    `aliases` are older spellings it still accepts)."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "aliases": aliases}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def _readers(field: str) -> str:
    """The model types whose network reads `field`, for a flag's help: `"transformer"`."""
    return ", ".join(name for name in MODEL_NAMES if field in get_model_type(name).hyperparameters)


def _per_model(field: str) -> str:
    """What `field` is in each model type that reads it, grouped: `"mlp, wavenet: the tanh layer; rnn, gru: state"`."""
    groups: dict[str, list[str]] = {}
    for name in MODEL_NAMES:
        meaning = get_model_type(name).hyperparameters.get(field)
        if meaning:
            groups.setdefault(meaning, []).append(name)
    return "; ".join(f"{', '.join(names)}: {meaning}" for meaning, names in groups.items())


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `config.json` in the run directory.

    The defaults are the lecture's own recipe (batch 32, 200,000 SGD steps at
    0.1, then 0.01 from step 100,000); `PRESETS` holds faster ones.

    Args:
        model: the network, one of `keras_makemore.models.MODEL_NAMES`;
            each reads the fields below that its `ModelType.hyperparameters` lists.
        data: path of the word list; `None` trains on makemore's names.txt.
        block_size: characters of context of a window model; the word models
            see the whole word.
        embed_dim: embedding size per character (a word model's width).
        hidden_units: width of the hidden layer (a recurrent model's state,
            a Transformer's MLP).
        layers: Transformer blocks.
        heads: attention heads of each Transformer block.
        dropout: dropout rate on the MLP's hidden layer, on a Transformer's
            embeddings and residual branches.
        direct_connections: Bengio's embedding-to-output connections (the MLP).
        batch_size: examples per minibatch (the global batch under a strategy):
            windows of a window model, rows of a word model.
        pack_words: pack a word model's words end to end, several to a row
            (`models.base.packed_word_sequences`), instead of one word a row
            padded to the longest: about twice the words a row on names. Only
            a model that keeps packed words apart takes it (transformer).
        steps: optimizer steps in all.
        epochs: if set, train this many passes' worth of steps over the
            training words instead of `steps` (a pass is `n_train / batch_size`
            steps, rounded to a multiple of 100).
        optimizer: one of `OPTIMIZERS`.
        lr: initial learning rate.
        lr_schedule: `"step"` divides the rate by 10 half-way, `"cosine"`
            decays it to 1% along a cosine, `"constant"` keeps it.
        lr_drops: `(step, rate)` pairs, e.g. `[(100000, 0.01)]`; when given
            they replace `lr_schedule`.
        weight_decay: decoupled weight decay of the optimizer (0: none).
        seed: seed of the initial weights, dropout and minibatches.
        split_seed: seed of the train/val/test shuffle (42 gives the lecture's split).
        eval_every: steps between validation passes (Keras epochs).
        eval_max_examples: if set, each validation pass during training
            reads only this many examples of the val split, spread evenly
            over it: a quick check on a big corpus. `None` reads all.
        early_stop: stop after this many validation passes without a lower
            val loss, keeping the best weights (`None`: train every step).
        xla: `"on"` compiles training with XLA (each chunk of steps, or each
            step for the transformer), `"off"` does not, `"auto"` uses XLA
            unless several replicas, or dropout in a model other than the
            transformer.
        threads: TensorFlow's intra-op threads, 0 for its default (one per
            core); `None` chooses: one for a step too small to share between
            cores, else 0 (`keras_makemore.training.threads`). Taken only if training
            starts TensorFlow's runtime in the process.
        strategy: the `tf.distribute` strategy, one of `STRATEGIES`.

    Example:

    >>> config = TrainConfig.from_preset("lecture", steps=20_000)
    >>> config.validate()
    >>> (config.batch_size, config.lr_schedule)
    (128, 'cosine')
    """

    model: str = config_field(DEFAULT_MODEL, f"the network: a window model ({', '.join(names_of_kind(WINDOW))}) or one "
                              f"that sees the whole word ({', '.join(names_of_kind(WORD))}); without --preset, its "
                              "own preset", choices=MODEL_NAMES)
    data: str | None = config_field(None, "UTF-8 text file, one word a line (default: makemore's names.txt, packaged)",
                              metavar="FILE")
    block_size: int = config_field(3, f"characters of context ({_readers('block_size')})", metavar="N")
    embed_dim: int = config_field(10, "embedding size", metavar="N")
    hidden_units: int = config_field(200, f"hidden units ({_per_model('hidden_units')})", metavar="N",
                                     aliases=("hidden",))
    layers: int = config_field(4, f"blocks ({_readers('layers')})", metavar="N")
    heads: int = config_field(4, f"attention heads per block ({_readers('heads')})", metavar="N")
    dropout: float = config_field(0.0, f"dropout ({_per_model('dropout')})", metavar="RATE")
    direct_connections: bool = config_field(False, "add Bengio's direct embedding-to-output connections "
                                            f"({_readers('direct_connections')})")
    batch_size: int = config_field(32, "minibatch size (global under a strategy): windows, or a word model's rows",
                             metavar="N")
    pack_words: bool = config_field(False, f"pack several words end to end in each row ({_readers('pack_words')}): "
                                    "about twice the words a row on names")
    steps: int = config_field(200_000, "optimizer steps", metavar="N")
    epochs: int | None = config_field(None, "passes over the training words, instead of steps", metavar="N")
    optimizer: str = config_field("sgd", "the optimizer", choices=OPTIMIZERS)
    lr: float = config_field(0.1, "initial learning rate", metavar="RATE")
    lr_schedule: str = config_field("step", "step: rate/10 half-way, as in the lecture; cosine: decay to 1%; constant",
                              choices=LR_SCHEDULES)
    lr_drops: list[tuple[int, float]] = config_field(
        [], "switch to RATE from STEP on (repeatable); replaces the schedule. The lecture: lr 0.1, drop 100000:0.01",
        flag="lr-drop", metavar="STEP:RATE")
    weight_decay: float = config_field(0.0, "decoupled weight decay", metavar="WD")
    seed: int = config_field(42, "seed of weights, dropout and minibatches", metavar="N")
    split_seed: int = config_field(42, "seed of the 80/10/10 split (42: the lecture's)", metavar="N")
    eval_every: int = config_field(10_000, "steps between validation passes", metavar="N")
    eval_max_examples: int | None = config_field(
        None, "validate during training on at most N examples spread over the val split (default: all of it); "
        "the final losses are over the whole splits", metavar="N")
    early_stop: int | None = config_field(None, "stop after PATIENCE validation passes without a lower val loss, keeping "
                                    "the best weights", metavar="PATIENCE")
    xla: str = config_field("auto", "compile the training loop with XLA (auto: unless several replicas, or dropout in "
                      "a model other than the transformer)",
                      choices=XLA_MODES)
    threads: int | None = config_field(
        None, "TensorFlow's intra-op threads, 0 for its default of one per core (default: one for a training step "
        "under 4M multiply-adds, as the lecture network's, else 0); taken when training starts TensorFlow",
        metavar="N")
    strategy: str = config_field("default", "tf.distribute strategy: default (one device), mirrored (local GPUs or "
                           "logical CPUs), multiworker (the cluster in TF_CONFIG)", choices=STRATEGIES)

    def validate(self) -> None:
        """Raise a `UserError` naming the first field whose value cannot train."""
        for name in ("block_size", "embed_dim", "hidden_units", "layers", "heads", "batch_size", "eval_every"):
            check_setting(getattr(self, name) >= 1, name, f"must be at least 1, got {getattr(self, name)}")
        check_setting(self.block_size <= MAX_BLOCK_SIZE, "block_size",
               f"must be at most {MAX_BLOCK_SIZE} characters of context, got {self.block_size}")
        check_setting(self.steps >= 1 or self.epochs is not None, "steps", f"must be at least 1, got {self.steps}")
        check_setting(self.steps <= MAX_STEPS, "steps", f"must be at most {MAX_STEPS:,} (years of training), "
                      f"got {self.steps:,}")
        for name in ("seed", "split_seed"):
            check_setting(-MAX_SEED - 1 <= getattr(self, name) <= MAX_SEED, name,
                          f"must be a whole number from {-MAX_SEED - 1} to {MAX_SEED}, got {getattr(self, name)}")
        check_setting(self.batch_size <= MAX_BATCH_TOKENS // 2, "batch_size",
                      f"must be at most {MAX_BATCH_TOKENS // 2:,} (a minibatch holds at most {MAX_BATCH_TOKENS:,} "
                      f"characters), got {self.batch_size:,}")
        check_setting(self.epochs is None or self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        check_setting(self.threads is None or 0 <= self.threads <= MAX_THREADS, "threads",
                      f"must be 0 (TensorFlow's default, one per core) to {MAX_THREADS}, got {self.threads}")
        check_setting(self.eval_max_examples is None or self.eval_max_examples >= 1, "eval_max_examples",
               f"must be at least 1, got {self.eval_max_examples}")
        check_setting(self.early_stop is None or self.early_stop >= 1, "early_stop",
               f"must be at least 1 validation pass, got {self.early_stop}")
        for name in ("model", "optimizer", "lr_schedule", "xla", "strategy"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            check_setting(getattr(self, name) in choices, name,
                   f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        check_setting(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        check_setting(0 <= self.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {self.weight_decay}")
        check_setting(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be a positive number, got {self.lr}")
        steps = [s for s, _ in self.lr_drops]
        check_setting(steps == sorted(set(steps)) and all(1 <= s <= MAX_STEPS for s in steps), "lr_drops",
               f"steps must be positive and increasing, got {steps}: e.g. [(100000, 0.01)]")
        check_setting(all(r > 0 and math.isfinite(r) for _, r in self.lr_drops), "lr_drops",
               f"rates must be positive numbers, got {[r for _, r in self.lr_drops]}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        """The named preset's settings (see `PRESETS`), with `overrides` on top."""
        check_setting(name in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
        return cls(**(PRESETS[name] | overrides))

    @classmethod
    def from_json(cls, obj: Any) -> "TrainConfig":
        """The config saved by `to_json` (other keys are ignored); a `UserError` for a wrong type."""
        if not isinstance(obj, dict):
            raise UserError(f"config must be a JSON object of settings, got {type(obj).__name__}", argument="config")
        hints = typing.get_type_hints(cls)
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in obj:
                values[field.name] = _coerce(field.name, obj[field.name], hints[field.name])
        return cls(**values)


def check_setting(condition: bool, name: str, problem: str) -> None:
    if not condition:
        raise UserError(f"{name} {problem}", argument=name)


def _coerce(name: str, value: Any, hint) -> Any:
    """`value` as the field's type, or a `UserError` saying what was expected."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in kinds:
        return None
    kind = next(k for k in kinds if k is not type(None))
    if typing.get_origin(kind) is list:
        if isinstance(value, list) and all(isinstance(p, list | tuple) and len(p) == 2
                                           and _is_number(p[0], int) and _is_number(p[1], float) for p in value):
            return [(int(s), float(r)) for s, r in value]
        raise UserError(f"{name} must be a list of [step, rate] pairs, got {value!r}", argument=name)
    if _is_number(value, kind) or (kind in (str, bool) and type(value) is kind):
        return kind(value)
    raise UserError(f"{name} must be {'a' if kind is not int else 'an'} {kind.__name__}, got {value!r}", argument=name)


def _is_number(value, kind) -> bool:
    """An int for an int field, an int or float for a float field; never a bool."""
    if isinstance(value, bool) or kind not in (int, float):
        return False
    return isinstance(value, int) or (kind is float and isinstance(value, float))


class StepPlan(NamedTuple):
    """How a run's steps are cut into Keras epochs (each ends with validation and a checkpoint).

    Args:
        total_steps: optimizer steps in all.
        epochs: Keras epochs.
        steps_per_epoch: steps between validation passes.
        steps_per_execution: steps per compiled call; divides `steps_per_epoch`.
    """

    total_steps: int
    epochs: int
    steps_per_epoch: int
    steps_per_execution: int


def plan_steps(config: TrainConfig, num_train_examples: int) -> StepPlan:
    """Split the run into Keras epochs of equal length, each run in chunks of up to 1,000 steps.

    The epochs are the fewest that divide the steps and last at most `eval_every` steps each; when those are
    over twice `ceil(steps / eval_every)` (awkward totals, e.g. primes), the total is rounded up instead. A
    `UserError` when the plan would be over `MAX_STEPS` steps.

    Example:

    >>> plan_steps(TrainConfig(steps=999_999_937, eval_every=10_000), 1)
    StepPlan(total_steps=1000000000, epochs=100000, steps_per_epoch=10000, steps_per_execution=1000)
    """
    if config.epochs is not None:
        per_pass = max(100, round(num_train_examples / config.batch_size / 100) * 100)
        total, eval_every = config.epochs * per_pass, per_pass
    else:
        total, eval_every = config.steps, config.eval_every
    _check_planned(config, total)
    fewest = max(1, math.ceil(total / eval_every))
    epochs = min(d for d in _divisors(total) if d >= fewest)
    if epochs > 2 * fewest:  # awkward totals, e.g. primes
        epochs = fewest
        total = math.ceil(total / epochs) * epochs
        _check_planned(config, total)
    steps_per_epoch = total // epochs
    steps_per_execution = max(d for d in range(1, min(1000, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
    return StepPlan(total, epochs, steps_per_epoch, steps_per_execution)


def _divisors(n: int) -> list[int]:
    """The divisors of `n` >= 1, by trial division up to its square root (31,623 tries for 10^9)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in small]


def _check_planned(config: TrainConfig, total: int) -> None:
    if total > MAX_STEPS:
        name = "epochs" if config.epochs is not None else "steps"
        raise UserError(f"{name} {getattr(config, name):,} would plan {total:,} steps, over the limit of "
                        f"{MAX_STEPS:,} (years of training): ask for fewer", argument=name)


# Fields that say how this machine runs the training, not which run it is: a resumed run, or a finished sweep
# cell, is the same run whatever they are.
_MACHINE_FIELDS = ("threads",)


def config_differences(saved: TrainConfig, given: TrainConfig) -> list[tuple[str, Any, Any]]:
    """`(field, saved value, given value)` for each field but `threads` in which `given` differs from `saved`."""
    return [(f.name, getattr(saved, f.name), getattr(given, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in _MACHINE_FIELDS and getattr(saved, f.name) != getattr(given, f.name)]
