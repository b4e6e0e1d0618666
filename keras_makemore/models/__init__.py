"""The model zoo: one module per architecture, one registry, one contract.

`REGISTRY` names the module of each model type; every module defines
`MODEL`, a `keras_makemore.models.base.ModelType` (the contract: how to build
the network from a `TrainConfig`, whether its context is a window of
characters or the whole word, how many parameters it has). Everything else in
keras-makemore (training, evaluation, the LR finder, sampling, scoring, plots,
report, export) reaches a model only through `keras_makemore.models.base`.

Adding a model is adding one module beside these and one line here.
This file imports no TensorFlow, so `config` can read the model names.
"""

import importlib

# model type -> module in this package
REGISTRY = {
    "mlp": "mlp",
    "bigram": "bigram",
    "wavenet": "wavenet",
    "bow": "bow",
    "rnn": "rnn",
    "gru": "gru",
    "transformer": "transformer",
}
MODEL_NAMES = tuple(REGISTRY)


def get_model_type(name: str):
    """The `ModelType` registered as `name` (a `UserError` for an unknown name)."""
    if name not in REGISTRY:
        from keras_makemore.errors import UserError

        raise UserError(f"model must be one of {', '.join(MODEL_NAMES)}, got {name!r}", argument="model")
    return importlib.import_module(f"keras_makemore.models.{REGISTRY[name]}").MODEL
