"""`sweep` and `tune`: grids of runs, and KerasTuner searches."""

import sys
import time
from pathlib import Path

from keras_makemore.cli.flags import (
    SWEEP_FIELDS,
    TRAIN_FIELDS,
    TUNE_FIELDS,
    TUNE_ROWS,
    add_config_flag,
    flag,
    positive_int,
    searched,
)
from keras_makemore.search.space import SWEEP_GRID, SWEEP_STEPS, TuneConfig
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import preset_name


def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train a grid of network sizes and compare them",
                       description="Train one run per cell of hidden units x embedding size x block size, "
                                   "each with the same seed and step budget, into OUT/<cell>; write OUT/sweep.csv "
                                   "and OUT/sweep.png. Run it again with the same flags to finish an "
                                   "interrupted sweep: finished cells are skipped.")
    for name, values in SWEEP_GRID.items():
        add_config_flag(p, name, default=list(values), type=positive_int, nargs="+",
                         help=f"{TRAIN_FIELDS[name].metadata['help']} to try (default: {' '.join(map(str, values))})")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="sweep directory (default: sweeps/<date-time>)")
    defaults = TrainConfig(steps=SWEEP_STEPS)
    for name in SWEEP_FIELDS:
        value = getattr(defaults, name)
        add_config_flag(p, name, default=value, default_text="" if value is None else f" (default: {value})")
    p.set_defaults(func=_sweep)


def _sweep(args) -> int:
    _require_keras_tuner("sweep")
    import tensorflow as tf

    from keras_makemore.search.sweep import SWEEP_CSV, SWEEP_PNG, sweep

    tf.get_logger().setLevel("ERROR")  # one model per cell makes TF warn about retracing; that is expected
    out = Path(args.out_dir or Path("sweeps") / time.strftime("%Y%m%d-%H%M%S"))
    base = TrainConfig(**{name: getattr(args, name) for name in SWEEP_FIELDS})
    rows = sweep(base, out, args.hidden_units, args.embed_dim, args.block_size)
    best = min(rows, key=lambda r: r["val_loss"])
    print(f"best val loss {best['val_loss']:.4f}: {best['cell']} ({best['params']:,} params, {best['verdict']})")
    print(f"table in {out / SWEEP_CSV}, plot in {out / SWEEP_PNG}")
    return 0


def add_tune(sub) -> None:
    p = sub.add_parser("tune", help="search for the network with the lowest val loss within a time budget",
                       description="Search TrainConfig's settings with KerasTuner (Hyperband, Bayesian, random or "
                                   "grid), each trial a real training run through engine.fit into OUT/search/, "
                                   "scored by its val loss. Write OUT/tune.csv, OUT/tune.png and OUT/best/ (the best "
                                   "trial's run directory), and print the best as a train command. Run it again "
                                   "with the same flags to continue it. Needs keras-makemore[tune].")
    p.add_argument("--out", dest="out_dir", metavar="DIR", help="search directory (default: tunes/<date-time>)")
    defaults = TuneConfig()
    for name in TUNE_FIELDS:
        value = getattr(defaults, name)
        add_config_flag(p, name, default=value, fields=TUNE_FIELDS,
                         default_text="" if value is None else f" (default: {value})")
    for name in ("data", "split_seed", "seed"):
        add_config_flag(p, name)
    for name in TUNE_ROWS:
        add_config_flag(p, name, nargs="+", help=f"{TRAIN_FIELDS[name].metadata['help']}: the values to try; one "
                                                  f"value fixes it (default: {searched(name)})".replace("%", "%%"))
    p.set_defaults(func=_tune)


def _require_keras_tuner(command: str) -> None:
    from keras_makemore.errors import UserError

    try:
        import keras_tuner  # noqa: F401
    except ImportError:
        raise UserError(f"{command} needs KerasTuner, an optional extra: install it with "
                        "pip install 'keras-makemore[tune]'") from None


def _tune(args) -> int:
    _require_keras_tuner("tune")
    import tensorflow as tf

    from keras_makemore.search.files import TUNE_CSV, TUNE_PNG
    from keras_makemore.search.tune import tune

    tf.get_logger().setLevel("ERROR")  # one model per trial makes TF warn about retracing; that is expected
    config = TuneConfig(**{name: getattr(args, name) for name in TUNE_FIELDS})
    data_flags = {name: getattr(args, name) for name in ("data", "split_seed", "seed") if getattr(args, name) is not None}
    base = config.base_configs(**data_flags)
    fixed = {name: tuple(getattr(args, name)) for name in TUNE_ROWS if getattr(args, name) is not None}
    out = Path(args.out_dir or Path("tunes") / time.strftime("%Y%m%d-%H%M%S"))
    try:
        result = tune(config, base, out, fixed)
    except KeyboardInterrupt:
        print("\nkeras-makemore: search interrupted; continue it by running the same command again",
              file=sys.stderr)
        return 130
    why = "the budget ended" if result.stopped == "budget" else "the search is complete"
    print(f"{len(result.rows)} trials in {result.seconds_used / 60:.1f} min of the {config.budget} budget; {why}")
    if result.best is None:
        print(f"no trial finished: give it a larger --budget (table in {out / TUNE_CSV})")
        return 0
    best = result.best
    print(f"best val loss {best['val_loss']:.4f}: trial {best['trial']} ({best['params']:,} params, "
          f"{best['steps_trained']:,} steps in {best['train_seconds']:.0f} s), run directory {result.best_dir}")
    if best["steps_trained"] < result.best_config.steps and not (result.best_dir / "history.json").exists():
        print(f"(Hyperband stopped trial {best['trial']} at step {best['steps_trained']:,}; the command trains all "
              f"{result.best_config.steps:,})")
    print("train it with: " + _train_command(result.best_config, config.preset_of(result.best_config.model)))
    print(f"table in {out / TUNE_CSV}, plot in {out / TUNE_PNG}")
    return 0


def _train_command(config: TrainConfig, preset: str) -> str:
    """The `keras-makemore train` command line of `config`: its model, the preset (unless the model's own),
    and a flag for each other value."""
    import shlex

    words = ["keras-makemore", "train", "--model", config.model]
    if preset != preset_name(None, config.model):
        words += ["--preset", preset]
    preset_config = TrainConfig.from_preset(preset, model=config.model)
    for name, field in TRAIN_FIELDS.items():
        value = getattr(config, name)
        if value == getattr(preset_config, name) or value is None or value is False:
            continue
        if value is True:
            words.append(flag(name))
        elif isinstance(value, list):
            words += [w for step, rate in value for w in (flag(name), f"{step}:{rate!r}")]
        else:
            words += [flag(name), str(value)]
    return shlex.join(words)
