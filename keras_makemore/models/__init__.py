"""The model zoo: one module per model type, one registry, one contract (`keras_makemore.models.base`).

`REGISTRY` names the module of each model type; every module defines `MODEL`,
a `ModelType`: its network, its presets, its search rows, the fields it reads.
Everything else in keras-makemore reaches a model type through
`get_model_type`, and a built Keras model through
`keras_makemore.models.keras_model`.

Adding a model type is adding one module beside these and one line here. The
registry and the model modules import no TensorFlow at import time.
"""

import functools
import importlib

# model type -> its module: a name in this package, or a dotted path to a module outside it; the first is the default
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
DEFAULT_MODEL = MODEL_NAMES[0]


@functools.cache
def get_model_type(name: str):
    """The `ModelType` registered as `name` (a `UserError` for an unknown name)."""
    if name not in REGISTRY:
        from keras_makemore.errors import UserError

        raise UserError(f"model must be one of {', '.join(MODEL_NAMES)}, got {name!r}", argument="model")
    module = REGISTRY[name] if "." in REGISTRY[name] else f"keras_makemore.models.{REGISTRY[name]}"
    declared = importlib.import_module(module).MODEL
    return declared.registered_as(name, default=name == DEFAULT_MODEL)


def names_of_kind(context: str) -> tuple[str, ...]:
    """The model types whose context is `context` (`"window"` or `"word"`), in registry order."""
    return tuple(name for name in MODEL_NAMES if get_model_type(name).context == context)
