"""`TrainConfig`: presets, defaults, saved configs, step plans, and the CLI flags generated from it."""

import pytest

from keras_makemore.errors import UserError
from keras_makemore.training.config import TrainConfig, plan_steps
from keras_makemore.training.presets import PRESETS


def test_presets_and_defaults():
    lecture = TrainConfig.from_preset("lecture")
    assert (lecture.block_size, lecture.embed_dim, lecture.hidden_units) == (3, 10, 200)  # the lecture's network
    exact = TrainConfig()  # the dataclass defaults are the lecture's own recipe
    assert (exact.batch_size, exact.steps, exact.optimizer, exact.lr, exact.lr_schedule) == (32, 200_000, "sgd", 0.1, "step")
    best = TrainConfig.from_preset("mlp-best", hidden_units=8)
    assert best.hidden_units == 8 and best.block_size == PRESETS["mlp-best"]["block_size"]
    with pytest.raises(UserError, match="preset must be one of lecture, .*best.*got 'huge'") as e:
        TrainConfig.from_preset("huge")
    assert e.value.argument == "preset"


@pytest.mark.parametrize("saved, argument, match", [
    ({"block_size": "three"}, "block_size", "block_size must be an int, got 'three'"),
    ({"lr": True}, "lr", "lr must be a float, got True"),
    ({"lr_drops": [[1, "x"]]}, "lr_drops", r"lr_drops must be a list of \[step, rate\] pairs"),
    ({"data": 5}, "data", "data must be a str, got 5"),
    ([1, 2, 3], "config", "config must be a JSON object of settings, got list"),
])
def test_a_saved_config_of_wrong_types_is_refused(saved, argument, match):
    with pytest.raises(UserError, match=match) as e:
        TrainConfig.from_json(saved)
    assert e.value.argument == argument


def test_a_saved_config_round_trips():
    config = TrainConfig(lr_drops=[(100, 0.01)], epochs=3, data="x.txt")
    assert TrainConfig.from_json(config.to_json() | {"vocab_size": 27}) == config
    assert TrainConfig.from_json({"lr": 1}).lr == 1.0


def test_validation_names_the_field():
    with pytest.raises(UserError, match="hidden_units must be at least 1, got 0") as e:
        TrainConfig(hidden_units=0).validate()
    assert e.value.argument == "hidden_units"


@pytest.mark.parametrize("steps, eval_every, expected", [
    (200_000, 10_000, (200_000, 20, 10_000, 1000)),
    (25_000, 10_000, (25_000, 4, 6_250, 625)),
    (600, 300, (600, 2, 300, 300)),
    (7, 10_000, (7, 1, 7, 7)),
])
def test_plan_steps(steps, eval_every, expected):
    assert plan_steps(TrainConfig(steps=steps, eval_every=eval_every), 1000) == expected


def test_plan_epochs_counts_passes_over_the_data():
    plan = plan_steps(TrainConfig(epochs=3, batch_size=32), 182_625)
    assert (plan.epochs, plan.steps_per_epoch, plan.total_steps) == (3, 5700, 17_100)


def test_cli_flags_come_from_the_config(capsys):
    from keras_makemore.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--hidden-units", "64", "--lr-drop", "10:0.01"])
    assert (args.hidden_units, args.lr_drops, args.argument_flags["hidden_units"]) == (64, [(10, 0.01)], "--hidden-units")
    assert parser.parse_args(["train", "--hidden", "48"]).hidden_units == 48  # the flag's old name still works
    sweep = parser.parse_args(["sweep"])
    assert (sweep.steps, sweep.lr, sweep.hidden_units) == (30_000, TrainConfig().lr, [50, 100, 200])
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--optimizer", "rmsprop"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "choose from 'sgd', 'adam', 'adamw'" in err
