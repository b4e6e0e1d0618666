"""The optimizer and learning-rate schedule a `TrainConfig` asks for."""

import keras

from keras_makemore.training.config import TrainConfig


def make_lr_schedule(config: TrainConfig, total_steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate as a function of the optimizer step, per `config`.

    Example:

    >>> schedule = make_lr_schedule(TrainConfig(lr=0.1, lr_drops=[(100, 0.01)]), total_steps=200)
    >>> [round(float(schedule(step)), 4) for step in (99, 100)]
    [0.1, 0.01]
    """
    # PiecewiseConstantDecay switches *after* a boundary, and step i runs with
    # iterations == i, so "rate r from step s on" is the boundary s - 1.
    if config.lr_drops:
        boundaries = [int(s) - 1 for s, _ in config.lr_drops]
        values = [float(config.lr)] + [float(r) for _, r in config.lr_drops]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if config.lr_schedule == "step" and total_steps >= 2:
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [total_steps // 2 - 1], [float(config.lr), float(config.lr) / 10]
        )
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(float(config.lr), total_steps, alpha=0.01)
    return float(config.lr)


def make_optimizer(config: TrainConfig, total_steps: int,
                   decay_exempt: tuple[str, ...] = ()) -> keras.optimizers.Optimizer:
    """`config.optimizer` with its schedule and weight decay; `decay_exempt` names the variables not decayed."""
    lr = make_lr_schedule(config, total_steps)
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, weight_decay=decay)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=decay)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    if decay_exempt:
        optimizer.exclude_from_weight_decay(var_names=list(decay_exempt))
    return optimizer
