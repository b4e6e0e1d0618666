"""Named `TrainConfig` settings: every model type's presets, gathered from its module.

`keras-makemore train --preset NAME` and `TrainConfig.from_preset(NAME)` start
from them; `train --model M` without `--preset` starts from M's own preset (the
first of its `ModelType.presets`). Each model module keeps its presets beside its
network, with the measurements behind them.
"""

from keras_makemore.models import DEFAULT_MODEL, MODEL_NAMES, get_model_type

PRESETS: dict[str, dict] = {name: settings for model in MODEL_NAMES
                            for name, settings in get_model_type(model).presets.items()}
DEFAULT_PRESET = get_model_type(DEFAULT_MODEL).own_preset


def preset_name(preset: str | None, model: str | None) -> str:
    """The preset a run starts from: `preset` if given, else `model`'s own (if it has one), else `DEFAULT_PRESET`.

    Example:

    >>> preset_name(None, "transformer"), preset_name(None, "mlp"), preset_name("best", "gru")
    ('transformer', 'lecture', 'best')
    """
    if preset is not None:
        return preset
    from keras_makemore.models import REGISTRY

    own = get_model_type(model).own_preset if model in REGISTRY else None
    return own or DEFAULT_PRESET
