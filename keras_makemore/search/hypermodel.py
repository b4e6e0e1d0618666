"""The search space of a `tune` and the KerasTuner `HyperModel` that trains one trial: a `TrainConfig` per trial,
trained through the recipe of `train`."""

import dataclasses
import itertools
import math
import os
from pathlib import Path
from typing import Mapping

import keras
import keras_tuner

from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import load_names
from keras_makemore.data.streaming import StreamedCorpus
from keras_makemore.errors import UserError
from keras_makemore.models import get_model_type
from keras_makemore.models.base import block_size_for, check_model_size
from keras_makemore.search.space import TUNE_MODELS, TUNE_SPACE, LogRange, TuneConfig
from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.distribute import make_strategy
from keras_makemore.training.recipe import Preparation, corpus_for, fit_run, prepare

OBJECTIVE = "val_loss"


def search_space(config: TuneConfig, base: TrainConfig | Mapping[str, TrainConfig] | None,
                 fixed: dict | None = None) -> dict[str, dict]:
    """The search space of each model type of `config.model`, a table field -> values or `LogRange`.

    A model type's table is `TUNE_SPACE` updated with its `TUNE_MODELS` rows;
    fields without a row keep the base config's value.

    Args:
        config: the search's settings (its `model`).
        base: each model type's base config (see `tune`); a relative range
            multiplies its value.
        fixed: field -> a value (that field is not searched) or a tuple of
            values to try, replacing the row of every model type that has one.

    Returns:
        `{model: {field: values}}`, every relative `LogRange` resolved against
        that model's base; a `LogRange` over an integer field becomes the tuple
        of its values.

    Example:

    >>> space = search_space(TuneConfig(model="all"), None)
    >>> space["transformer"]["steps"], space["bigram"]["steps"]
    ((12000, 24000, 48000), (1000, 2000, 4000))
    >>> "block_size" in space["gru"], "hidden_units" in space["bigram"]
    (False, False)
    """
    bases = base_configs(config, base)
    fixed = dict(fixed or {})
    tables = {model: TUNE_SPACE | TUNE_MODELS[model] for model in bases}
    for name in fixed:
        if not any(name in table for table in tables.values()):
            known = sorted(set().union(*tables.values()))
            raise UserError(f"{name} is not searched for model {config.model}: fix it in the preset, or choose a "
                            f"field of {', '.join(known)}", argument=name)
    space = {}
    for model, table in tables.items():
        space[model] = {name: _resolve(fixed.get(name, values), bases[model], name) for name, values in table.items()}
        _check_rows(bases[model], space[model])
    return space


def base_configs(config: TuneConfig, base: TrainConfig | Mapping[str, TrainConfig] | None) -> dict[str, TrainConfig]:
    """Model type -> its base config: `base`'s entry, `base` itself (for every type), or (`None`) its preset."""
    if base is None:
        return config.base_configs()
    if isinstance(base, TrainConfig):
        return {model: dataclasses.replace(base, model=model) for model in config.models()}
    missing = [model for model in config.models() if model not in base]
    if missing:
        raise UserError(f"base has no config for model {', '.join(missing)}: give one per model type searched "
                        "(TuneConfig.base_configs makes them from the presets)", argument="base")
    return {model: dataclasses.replace(base[model], model=model) for model in config.models()}


def _resolve(values, base: TrainConfig, name: str):
    """A row's values, a relative range multiplied by `base`'s value; an integer field's range as a tuple."""
    if not isinstance(values, LogRange):
        return tuple(dict.fromkeys(values if isinstance(values, (tuple, list)) else (values,)))
    if values.relative:
        values = LogRange(values.low * getattr(base, name), values.high * getattr(base, name))
    if TrainConfig.__dataclass_fields__[name].type is not int:
        return values
    doublings = math.floor(math.log2(values.high / values.low) + 1e-9)
    return tuple(dict.fromkeys(max(1, round(values.low * 2 ** k)) for k in range(doublings + 1)))


def _check_rows(base: TrainConfig, rows: dict) -> None:
    """A `UserError` if a value of a row, or a combination of the network's values, cannot train."""
    model_type = get_model_type(base.model)
    values = {name: row for name, row in rows.items() if not isinstance(row, LogRange)}  # a LogRange is valid
    for name, row in values.items():
        for value in row:
            dataclasses.replace(base, **{name: value}).validate()
    network = [name for name in model_type.hyperparameters if name in values]
    for combination in itertools.product(*(rows[name] for name in network)):
        try:
            model_type.check(dataclasses.replace(base, **dict(zip(network, combination))))
        except UserError as e:
            raise UserError(f"model {base.model} cannot train every combination searched: {e}",
                            argument=e.argument) from None


def check_sizes(space: dict, bases: Mapping[str, TrainConfig], hypermodel: "TrainConfigHyperModel") -> None:
    """A `UserError` before anything trains if a combination of a model type's rows makes too large a network."""
    for model, rows in space.items():
        corpus = hypermodel.corpus(bases[model])  # one vocabulary for every network; read once per kind of context
        model_type = get_model_type(model)
        network = [name for name in model_type.hyperparameters if name in rows and not isinstance(rows[name], LogRange)]
        for combination in itertools.product(*(rows[name] for name in network)):
            config = dataclasses.replace(bases[model], **dict(zip(network, combination)))
            try:
                check_model_size(model_type, config, corpus.vocab.size,
                                 block_size_for(model_type, config.block_size, corpus.max_word_length))
            except UserError as e:
                raise UserError(f"model {model} cannot train every combination searched: {e}",
                                argument=e.argument) from None


class TrainConfigHyperModel(keras_tuner.HyperModel):
    """A KerasTuner `HyperModel` over `TrainConfig`: hyperparameters in, a trained run directory out.

    Args:
        bases: model type -> the settings of its trials that the space does
            not set (`base_configs`).
        space: the tables of `search_space`.
        evals: validation passes per trial.
        hyperband: the run length is Hyperband's (the largest `steps`), not a
            hyperparameter.

    Example:

    ```python
    bases = TuneConfig(model="gru").base_configs()
    hypermodel = TrainConfigHyperModel(bases, search_space(TuneConfig(model="gru"), bases), evals=10)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    model = hypermodel.build(hp)
    best_val = hypermodel.fit(hp, model, run_dir="runs/one-trial")["val_loss"]
    ```
    """

    def __init__(self, bases: Mapping[str, TrainConfig], space: dict, evals: int, hyperband: bool = False):
        super().__init__()
        self.bases, self.space, self.evals, self.hyperband = dict(bases), space, evals, hyperband
        self._corpora: dict[tuple[str, int], Corpus | StreamedCorpus] = {}
        data = {base.data for base in self.bases.values()}
        if len(data) > 1:
            raise UserError(f"base configs train on different data ({', '.join(map(str, data))}): every trial of "
                            "a search trains and validates on the same words", argument="data")
        self.data_path = Path(data.pop()) if None not in data else load_names()

    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        """Declare `model` and each model type's rows, under its `model` condition and name scope (`gru/lr`)."""
        models = list(self.space)
        if len(models) > 1:
            hp.Choice("model", models)
        else:
            hp.Fixed("model", models[0])
        for model, rows in self.space.items():
            with hp.conditional_scope("model", [model]), hp.name_scope(model):
                for name, values in rows.items():
                    if not (self.hyperband and name == "steps"):
                        _declare(hp, name, values)

    def config(self, hp: keras_tuner.HyperParameters) -> TrainConfig:
        """The trial's `TrainConfig`: its model type's base, with the values of that type's rows."""
        model = hp.values["model"]
        rows = self.space[model]
        values = {name: hp.values[f"{model}/{name}"] for name in rows if f"{model}/{name}" in hp.values}
        values["model"] = model
        if self.hyperband:
            values["steps"] = max(rows["steps"])
        values["eval_every"] = max(1, values.get("steps", self.bases[model].steps) // self.evals)
        if self.hyperband:
            values["steps"] = values["eval_every"] * self.evals  # exactly `evals` rounds
        config = dataclasses.replace(self.bases[model], **values)
        config.validate()
        return config

    def prepare(self, config: TrainConfig) -> Preparation:
        """What a trial of `config` trains on (`recipe.prepare`)."""
        return prepare(config, self.data_path, self.corpus(config))

    def corpus(self, config: TrainConfig) -> Corpus | StreamedCorpus:
        """The data split for `config`'s network (its size checked), read once per kind of context."""
        key = (get_model_type(config.model).context, config.block_size)
        if key not in self._corpora:
            self._corpora[key] = corpus_for(config, self.data_path)
        return self._corpora[key]

    def plan(self, config: TrainConfig):
        return self.prepare(config).plan

    def parameters(self, config: TrainConfig) -> int:
        corpus = self.corpus(config)
        return get_model_type(config.model).count_parameters(config, corpus.vocab.size, corpus.block_size)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The trial's network, compiled as `train` compiles it."""
        config = self.config(hp)
        return self.prepare(config).build(make_strategy(config.strategy))

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, run_dir: str | os.PathLike,
            epochs: int | None = None, callbacks=()) -> dict:
        """Train `model` into `run_dir` up to Keras epoch `epochs` (default: the whole run), as `train` does.

        A run directory holding a checkpoint is continued from it: the model
        and optimizer are restored and the minibatches start at the step it
        reached. The run is finished (`history.json`, no checkpoint) when it
        reaches its last step, stops early or diverges; otherwise its
        checkpoint stays for a later round.

        Returns:
            `{"val_loss": the lowest val loss of the run, "fit_seconds": the
            seconds in engine.fit}`.
        """
        run_dir = Path(run_dir)
        prep = self.prepare(self.config(hp))
        config, plan = prep.config, prep.plan
        epochs = plan.epochs if epochs is None else min(epochs, plan.epochs)
        if not (run_dir / rundir.CONFIG_FILE).exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            rundir.start_run_dir(run_dir, config, prep.corpus.vocab, self.data_path, plan,
                                 prep.corpus.max_word_length)
        # A checkpoint cut short by a kill is skipped (the one before it, or none, is restored).
        fitted = fit_run(prep, model, run_dir, resume=True, epochs=epochs, callbacks=callbacks)
        if epochs == plan.epochs or fitted.stopped_early or fitted.bad_step is not None:
            rundir.finish_run_dir(run_dir, fitted.seconds)
        best = rundir.best_val_loss(run_dir)
        if not math.isfinite(best):
            raise keras_tuner.errors.FailedTrialError(
                f"lr {config.lr} made training diverge near step {fitted.bad_step}")
        return {OBJECTIVE: best, "fit_seconds": fitted.seconds}


def _declare(hp, name: str, values) -> None:
    if isinstance(values, LogRange):
        hp.Float(name, values.low, values.high, step=2, sampling="log")
    else:
        hp.Choice(name, list(values), ordered=all(isinstance(v, (int, float)) for v in values))
