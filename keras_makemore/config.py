"""What defines a training run: `TrainConfig`, its presets, its validation and its step plan.

This module is the single source of every training default. The CLI's flags,
choices and help texts are generated from the fields' metadata here, so a
default changes in one place. No TensorFlow is imported.
"""

import dataclasses
import math
import re
import types
import typing
from typing import Any, NamedTuple

from keras_makemore.errors import UserError
from keras_makemore.models import MODEL_NAMES

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "step", "cosine")
XLA_MODES = ("auto", "on", "off")
STRATEGIES = ("default", "mirrored", "multiworker")
MAX_BLOCK_SIZE = 1024
MAX_PARAMETERS = 200_000_000  # 0.75 GiB of weights; Adam's state triples it
MAX_STEPS = 10**9  # 10^9 steps are years of training; the bound a run directory's step plan is read back with
MAX_SEED = 2**31 - 1  # seeds are int32, as `sample --seed`'s: from -2^31 to 2^31 - 1
MAX_THREADS = 256  # each thread reserves its stack: 100,000 hung the start, or crashed under a memory cap
# The characters of one minibatch (`batch_size` rows of `block_size + 1` tokens): 256x the `transformer`
# preset's. Minibatches are drawn 100 steps at a time (`data._random_minibatches`), so this bounds that draw to
# about 200 MB, and a step's activations to a few GB.
MAX_BATCH_TOKENS = 2**18


def _field(default, help: str, flag: str | None = None, metavar: str | None = None, choices=None,
           aliases: tuple[str, ...] = (), **kwargs):
    """A dataclass field whose metadata the CLI turns into a flag (`flag` defaults to the field's name;
    `aliases` are older spellings it still accepts)."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "aliases": aliases}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; saved as `config.json` in the run directory.

    The defaults are the lecture's own recipe (batch 32, 200,000 SGD steps at
    0.1, then 0.01 from step 100,000); `PRESETS` holds faster ones.

    Args:
        model: the network, one of `keras_makemore.models.MODEL_NAMES`;
            each reads the fields below that its `ModelType.hyperparameters` lists.
        data: path of the word list; `None` trains on makemore's names.txt.
        block_size: characters of context of a window model (mlp, bigram,
            wavenet); the word models (bow, rnn, gru, transformer) see the
            whole word.
        embed_dim: embedding size per character (a word model's width).
        hidden_units: width of the hidden layer (a recurrent model's state,
            a Transformer's MLP).
        layers: Transformer blocks.
        heads: attention heads of each Transformer block.
        dropout: dropout rate on the MLP's hidden layer, on a Transformer's
            embeddings and residual branches.
        direct_connections: Bengio's embedding-to-output connections (mlp).
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
            cores, else 0 (`keras_makemore.threads`). Taken only if training
            starts TensorFlow's runtime in the process.
        strategy: the `tf.distribute` strategy, one of `STRATEGIES`.

    Example:

    >>> config = TrainConfig.from_preset("lecture", steps=20_000)
    >>> config.validate()
    >>> (config.batch_size, config.lr_schedule)
    (128, 'cosine')
    """

    model: str = _field("mlp", "the network: a window model (mlp, bigram, wavenet) or one that sees the whole word "
                        "(bow, rnn, gru, transformer); without --preset, its own preset", choices=MODEL_NAMES)
    data: str | None = _field(None, "UTF-8 text file, one word a line (default: makemore's names.txt, packaged)",
                              metavar="FILE")
    block_size: int = _field(3, "characters of context", metavar="N")
    embed_dim: int = _field(10, "embedding size", metavar="N")
    hidden_units: int = _field(200, "hidden units (mlp, wavenet: tanh layer; rnn, gru: state; bow, transformer: MLP)",
                               metavar="N", aliases=("hidden",))
    layers: int = _field(4, "Transformer blocks", metavar="N")
    heads: int = _field(4, "attention heads per Transformer block", metavar="N")
    dropout: float = _field(0.0, "dropout (mlp: on the hidden layer; transformer: embeddings and residual branches)",
                            metavar="RATE")
    direct_connections: bool = _field(False, "add Bengio's direct embedding-to-output connections (mlp)")
    batch_size: int = _field(32, "minibatch size (global under a strategy): windows, or a word model's rows",
                             metavar="N")
    pack_words: bool = _field(False, "pack several words end to end in each row (transformer): about twice the "
                              "words a row on names")
    steps: int = _field(200_000, "optimizer steps", metavar="N")
    epochs: int | None = _field(None, "passes over the training words, instead of steps", metavar="N")
    optimizer: str = _field("sgd", "the optimizer", choices=OPTIMIZERS)
    lr: float = _field(0.1, "initial learning rate", metavar="RATE")
    lr_schedule: str = _field("step", "step: rate/10 half-way, as in the lecture; cosine: decay to 1%; constant",
                              choices=LR_SCHEDULES)
    lr_drops: list[tuple[int, float]] = _field(
        [], "switch to RATE from STEP on (repeatable); replaces the schedule. The lecture: lr 0.1, drop 100000:0.01",
        flag="lr-drop", metavar="STEP:RATE")
    weight_decay: float = _field(0.0, "decoupled weight decay", metavar="WD")
    seed: int = _field(42, "seed of weights, dropout and minibatches", metavar="N")
    split_seed: int = _field(42, "seed of the 80/10/10 split (42: the lecture's)", metavar="N")
    eval_every: int = _field(10_000, "steps between validation passes", metavar="N")
    eval_max_examples: int | None = _field(
        None, "validate during training on at most N examples spread over the val split (default: all of it); "
        "the final losses are over the whole splits", metavar="N")
    early_stop: int | None = _field(None, "stop after PATIENCE validation passes without a lower val loss, keeping "
                                    "the best weights", metavar="PATIENCE")
    xla: str = _field("auto", "compile the training loop with XLA (auto: unless several replicas, or dropout in "
                      "a model other than the transformer)",
                      choices=XLA_MODES)
    threads: int | None = _field(
        None, "TensorFlow's intra-op threads, 0 for its default of one per core (default: one for a training step "
        "under 4M multiply-adds, as the lecture network's, else 0); taken when training starts TensorFlow",
        metavar="N")
    strategy: str = _field("default", "tf.distribute strategy: default (one device), mirrored (local GPUs or "
                           "logical CPUs), multiworker (the cluster in TF_CONFIG)", choices=STRATEGIES)

    def validate(self) -> None:
        """Raise a `UserError` naming the first field whose value cannot train."""
        for name in ("block_size", "embed_dim", "hidden_units", "layers", "heads", "batch_size", "eval_every"):
            _check(getattr(self, name) >= 1, name, f"must be at least 1, got {getattr(self, name)}")
        _check(self.block_size <= MAX_BLOCK_SIZE, "block_size",
               f"must be at most {MAX_BLOCK_SIZE} characters of context, got {self.block_size}")
        _check(self.steps >= 1 or self.epochs is not None, "steps", f"must be at least 1, got {self.steps}")
        _check(self.steps <= MAX_STEPS, "steps", f"must be at most {MAX_STEPS:,} (years of training), "
               f"got {self.steps:,}")
        for name in ("seed", "split_seed"):
            _check(-MAX_SEED - 1 <= getattr(self, name) <= MAX_SEED, name,
                   f"must be a whole number from {-MAX_SEED - 1} to {MAX_SEED}, got {getattr(self, name)}")
        _check(self.batch_size <= MAX_BATCH_TOKENS // 2, "batch_size",
               f"must be at most {MAX_BATCH_TOKENS // 2:,} (a minibatch holds at most {MAX_BATCH_TOKENS:,} "
               f"characters), got {self.batch_size:,}")
        _check(self.epochs is None or self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        _check(self.threads is None or 0 <= self.threads <= MAX_THREADS, "threads",
               f"must be 0 (TensorFlow's default, one per core) to {MAX_THREADS}, got {self.threads}")
        _check(self.eval_max_examples is None or self.eval_max_examples >= 1, "eval_max_examples",
               f"must be at least 1, got {self.eval_max_examples}")
        _check(self.early_stop is None or self.early_stop >= 1, "early_stop",
               f"must be at least 1 validation pass, got {self.early_stop}")
        for name in ("model", "optimizer", "lr_schedule", "xla", "strategy"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            _check(getattr(self, name) in choices, name,
                   f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        _check(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        _check(0 <= self.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {self.weight_decay}")
        _check(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be a positive number, got {self.lr}")
        steps = [s for s, _ in self.lr_drops]
        _check(steps == sorted(set(steps)) and all(1 <= s <= MAX_STEPS for s in steps), "lr_drops",
               f"steps must be positive and increasing, got {steps}: e.g. [(100000, 0.01)]")
        _check(all(r > 0 and math.isfinite(r) for _, r in self.lr_drops), "lr_drops",
               f"rates must be positive numbers, got {[r for _, r in self.lr_drops]}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        """The named preset's settings (see `PRESETS`), with `overrides` on top."""
        _check(name in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
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


def _check(condition: bool, name: str, problem: str) -> None:
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


# makemore.py's network with dropout 0.15 and weight decay 0.1 (not on the norms and biases: the model's
# `decay_exempt`), batch 64: val 1.9195 after 453 s of training on 2 idle cores (docs/models.md). Machines
# differ: an earlier one took 618 s for these 24,000 steps; 20,000 (val 1.9211) took 382 s here, 564 s there.
# Measured against it: dropout 0.2 and 0.25 (1.9324, 1.9419 at 22,000 steps), batch 32 for 38,000 steps (1.9289;
# dropout 0.1: 1.9349), weight decay 0.02 to 0.3 (1.9263 at best), each decaying every variable.
# Packed words (`pack_words`: about twice the words a step for the same cost) did not end lower: 1.9233 with 40
# rows a step, 1.9277 with 32, 1.9313 with 48; with 40 rows and seed 1, 1.9321 against 1.9258; with dropout 0.2,
# 1.9208 (40 rows), 1.9246 (32) and 1.9161 (48 rows, but 36.0 steps/s against makemore.py's 37.0, and about
# 650 s for 24,000 steps on a slow machine); with dropout 0.25, 1.9260 (40 rows) (docs/models.md).
# Dropout masks drawn with Threefry instead of Philox: 1.22x the steps/s, but val 1.9267, 1.9275, 1.9278, 1.9290
# for seeds 42, 1, 2, 3, against 1.9195, 1.9258, 1.9254, 1.9239, 1.9297 for seeds 42 to 4 with Keras' masks
# (benchmarks/dropout.py, docs/models.md).
_TRANSFORMER = dict(model="transformer", embed_dim=64, hidden_units=256, layers=4, heads=4, dropout=0.15,
                    batch_size=64, steps=24_000, eval_every=2_000, optimizer="adamw", lr=2e-3, lr_schedule="cosine",
                    weight_decay=0.1)

# `train --model transformer`: the same network and optimizer at makemore.py's batch of 32 rows, each row holding
# about two words end to end (`pack_words`), dropout 0.2. A step costs what makemore.py's does, so it runs more
# steps per second (1.10-1.32x side by side, benchmarks/vs_makemore.py) and is ahead at every wall time; it ends
# higher than `best` (val 1.9247 against 1.9195), which spends twice the rows on each step (docs/models.md).
_TRANSFORMER_PACKED = _TRANSFORMER | dict(pack_words=True, batch_size=32, dropout=0.2)

# Named settings for `TrainConfig.from_preset` and `keras-makemore train --preset`.
PRESETS: dict[str, dict] = {
    # The lecture's network (block 3, embedding 10, hidden 200) with a faster
    # recipe than the lecture's batch-32 step schedule (TrainConfig's defaults):
    # batch 128 and a cosine decay reach a lower val loss in less time.
    "lecture": dict(block_size=3, embed_dim=10, hidden_units=200, batch_size=128, steps=150_000,
                    optimizer="sgd", lr=0.2, lr_schedule="cosine"),
    # The best model within 10 minutes of training on 2 cores (docs/models.md): the Transformer at batch 64.
    "best": _TRANSFORMER,
    # A flat MLP tuned on the val split: 8 characters of context, a wider
    # embedding and hidden layer, dropout and decoupled weight decay, sized to
    # train in under 10 minutes on 2 cores (validating every 19,000 steps).
    # XLA on: measured 1.07x for this dropout model. Val 1.9923; `best` was this until the Transformer beat it.
    "mlp-best": dict(block_size=8, embed_dim=32, hidden_units=768, dropout=0.1, batch_size=256, steps=95_000,
                 eval_every=19_000, optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.05, xla="on"),
    # The lecture's MLP widened (context 5, embedding 32) at batch 256: val 2.0208 in about 30 s. Found by
    # `keras-makemore tune --model mlp --budget 15m` (60 Hyperband trials in 14.4 min; docs/tune.md).
    "quick": dict(block_size=5, embed_dim=32, hidden_units=200, batch_size=256, steps=40_000, eval_every=4_000,
                  optimizer="sgd", lr=0.2, lr_schedule="cosine"),
    # A preset per model type but mlp (whose own is "lecture"), named after it: `train --model NAME`
    # starts from it. docs/models.md has the measurements behind each.
    "bigram": dict(model="bigram", block_size=1, batch_size=128, steps=2_000, eval_every=500,
                   optimizer="adam", lr=0.1, lr_schedule="cosine"),
    "wavenet": dict(model="wavenet", block_size=8, embed_dim=24, hidden_units=128, batch_size=128, steps=20_000,
                    eval_every=5_000, optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.05),
    "bow": dict(model="bow", embed_dim=64, hidden_units=64, batch_size=64, steps=6_000, eval_every=1_500,
                optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.01),
    "rnn": dict(model="rnn", embed_dim=64, hidden_units=64, batch_size=64, steps=6_000, eval_every=1_500,
                optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.01),
    # Weight decay 0.1 measured val 1.9616 against 1.9827 with 0.01 (docs/models.md).
    "gru": dict(model="gru", embed_dim=64, hidden_units=128, batch_size=64, steps=8_000, eval_every=1_000,
                optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.1),
    "transformer": _TRANSFORMER_PACKED,
}
DEFAULT_PRESET = "lecture"


def preset_name(preset: str | None, model: str | None) -> str:
    """The preset a run starts from: `preset` if given, else `model`'s own (if it has one), else `DEFAULT_PRESET`.

    Example:

    >>> preset_name(None, "transformer"), preset_name(None, "mlp"), preset_name("best", "gru")
    ('transformer', 'lecture', 'best')
    """
    if preset is not None:
        return preset
    return model if model in PRESETS else DEFAULT_PRESET

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
# Each model type's sizes, around its preset (docs/models.md has the measurements behind each preset): the
# preset's value, half and double it, within what a search of an hour on 2 cores can afford.
TUNE_MODELS: dict[str, dict[str, tuple | LogRange]] = {
    # The MLP keeps absolute batch and step rows: its search aims at the fastest run to a val loss (a `quick`
    # preset, <= 60 s of training), not at the 150,000 steps of its `lecture` preset.
    "mlp": {"block_size": (3, 4, 5, 6, 8), "embed_dim": (8, 10, 16, 24, 32), "hidden_units": (100, 200, 300, 500, 800),
            "batch_size": (32, 64, 128, 256), "steps": (5_000, 10_000, 20_000, 40_000)},
    "bigram": {},  # a table of V x V logits: only the optimizer's rows
    "wavenet": {"block_size": (4, 8, 16), "embed_dim": (12, 24, 48), "hidden_units": (64, 128, 256)},
    "bow": {"embed_dim": (32, 64, 128), "hidden_units": (32, 64, 128)},
    "rnn": {"embed_dim": (32, 64, 128), "hidden_units": (32, 64, 128)},
    "gru": {"embed_dim": (32, 64, 128), "hidden_units": (64, 128, 256)},
    # embed_dim up to 96, not 128: the largest network (6 layers, hidden 512) has 4x the preset's parameters
    # (826,203), not 6x.
    "transformer": {"embed_dim": (32, 64, 96), "hidden_units": (128, 256, 512), "layers": (2, 4, 6),
                    "heads": (2, 4, 8), "dropout": (0.0, 0.1, 0.2)},
}
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

    model: str = _field("mlp", "the model type to tune; all: search over the model types too",
                        choices=(*TUNE_MODELS, "all"))
    budget: str = _field("15m", "wall-clock budget of the whole search, e.g. 15m, 1h30m, 90s; trials that cannot "
                         "end within it are not started", metavar="TIME")
    tuner: str = _field("hyperband", "the KerasTuner search", choices=TUNERS)
    preset: str | None = _field(None, "the preset the trials of its model type start from (lecture, best: mlp); the "
                                "other model types start from their own (default: each its own)",
                                choices=tuple(PRESETS))
    evals: int = _field(10, "validation passes per trial", metavar="N")
    early_stop: int | None = _field(3, "early-stopping patience of each trial, in validation passes",
                                    metavar="PATIENCE")
    max_trials: int | None = _field(None, "stop after N trials (default: when the budget or the search ends)",
                                    metavar="N")

    def validate(self) -> None:
        """Raise a `UserError` naming the first field that cannot search."""
        for name in ("model", "tuner", "preset"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            _check(getattr(self, name) in choices or (name == "preset" and self.preset is None), name,
                   f"must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.preset is not None:
            made_for = TrainConfig.from_preset(self.preset).model
            _check(made_for in self.models(), "preset", f"{self.preset} was made for model {made_for}, which model "
                   f"{self.model} does not search: search model {made_for} or all, or leave the preset out")
        self.budget_seconds()
        _check(self.evals >= 1, "evals", f"must be at least 1, got {self.evals}")
        for name in ("early_stop", "max_trials"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, f"must be at least 1, got {value}")

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
        _check(bool(self.budget.strip()) and parts is not None, "budget",
               f"must be a duration such as 15m, 1h30m or 90s, got {self.budget!r}")
        hours, minutes, seconds = (float(p or 0) for p in parts.groups())
        total = 3600 * hours + 60 * minutes + seconds
        _check(total > 0, "budget", f"must be longer than 0 seconds, got {self.budget!r}")
        return total

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


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
