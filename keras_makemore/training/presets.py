"""Named `TrainConfig` settings: every model type's presets, gathered from its module.

`keras-makemore train --preset NAME` and `TrainConfig.from_preset(NAME)` start
from them; `train --model M` without `--preset` starts from M's own preset (the
first of its `ModelType.presets`). Each model module keeps its presets beside its
network, with the measurements behind them.
"""

from keras_makemore.models import DEFAULT_MODEL, MODEL_NAMES, get_model_type


def _gather() -> tuple[dict[str, dict], dict[str, str]]:
    """Every model type's presets in registry order, a name taken twice prefixed with its model type's; and the
    name under which each model type's own preset is listed."""
    presets, own = {}, {}
    for model in MODEL_NAMES:
        for i, (name, settings) in enumerate(get_model_type(model).presets.items()):
            listed = name if name not in presets else f"{model}-{name}"
            presets[listed] = settings
            if i == 0:
                own[model] = listed
    return presets, own


PRESETS, OWN_PRESETS = _gather()
DEFAULT_PRESET = OWN_PRESETS[DEFAULT_MODEL]


def preset_name(preset: str | None, model: str | None) -> str:
    """The preset a run starts from: `preset` if given, else `model`'s own (if it has one), else `DEFAULT_PRESET`.

    Example:

    >>> preset_name(None, "transformer"), preset_name(None, "mlp"), preset_name("best", "gru")
    ('transformer', 'lecture', 'best')
    """
    if preset is not None:
        return preset
    return OWN_PRESETS.get(model, DEFAULT_PRESET)
