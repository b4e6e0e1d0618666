"""`tune` on KerasTuner: a real tiny search, its resume after kill -9, the budget, the missing extra; `--early-stop`."""

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import ROOT, assert_readable_png, run_cli

from keras_makemore.analysis.evaluation import evaluate_splits
from keras_makemore.errors import UserError
from keras_makemore.search.space import TUNE_MODELS, TUNE_SPACE, TuneConfig
from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train
from keras_makemore.training.run import Run

pytest.importorskip("keras_tuner")

import keras_tuner  # noqa: E402

from keras_makemore.models import MODEL_NAMES, get_model_type  # noqa: E402
from keras_makemore.search.budget import Budget, _scaled
from keras_makemore.search.files import read_tune_csv
from keras_makemore.search.hypermodel import TrainConfigHyperModel, search_space
from keras_makemore.search.tune import tune

TINY = {"block_size": 3, "embed_dim": (2, 4), "hidden_units": (8, 16), "batch_size": 16, "steps": 300, "lr": 0.01}


@pytest.fixture
def base(words_path):
    return TrainConfig(data=str(words_path.resolve()), optimizer="adam", lr=0.01, seed=3)


@pytest.mark.slow
def test_tiny_hyperband_search_continues_trials_as_one_uninterrupted_run(tmp_path, base):
    out = tmp_path / "search"
    log = []
    result = tune(TuneConfig(budget="5m", tuner="hyperband", evals=3), base, out, fixed=TINY, print_fn=log.append)

    assert result.stopped == "done" and len(result.rows) == len(log) >= 3
    assert read_tune_csv(out / "tune.csv") == result.rows
    assert_readable_png(out / "tune.png")
    best = min(result.rows, key=lambda r: r["val_loss"])
    assert result.best == best and best["status"] == "COMPLETED"

    # A trial of Hyperband's second round starts from the first round's checkpoint and minibatch step:
    # trained to the end, it is the very run `train` makes of its config.
    continued = [r for r in result.rows if r["continues"]]
    assert continued and all(r["steps_trained"] == 300 for r in continued)
    row = continued[0]
    assert f"continued trial {row['continues']} from step 100" in log[result.rows.index(row)]
    trial_run = out / "search" / f"trial_{row['trial']}" / "run"
    config, _ = rundir.read_config(trial_run)
    alone = train(config, tmp_path / "alone", verbose=0)
    assert (trial_run / "history.csv").read_text() == (alone.run_dir / "history.csv").read_text()
    assert row["val_loss"] == pytest.approx(min(alone.history["val_loss"]), abs=1e-6)

    # best/ is a run directory like any other
    run = Run.load(result.best_dir)
    assert run.config == result.best_config and result.best_config.early_stop == 3
    losses = evaluate_splits(run.model, run.corpus(), ("val",))
    assert losses["val"].nll == pytest.approx(best["val_loss"], abs=1e-5)
    assert best["params"] == run.model.count_params()


@pytest.mark.slow
def test_search_resumes_after_kill_9_without_redoing_finished_trials(tmp_path, words_path):
    flags = ["tune", "--data", str(words_path), "--tuner", "random", "--max-trials", "3", "--block-size", "3",
             "--embed-dim", "2", "4", "--hidden", "8", "16", "--batch-size", "16", "--steps", "600", "--evals", "3",
             "--lr", "0.2", "0.4", "--budget", "10m"]
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "keras_makemore", *flags, "--out", str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second_checkpoint = out / "search" / "trial_1" / "run" / "backup"
    deadline = time.monotonic() + 240
    while not second_checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of trial 1, after its first checkpoint
    process.communicate()
    first_model = out / "search" / "trial_0" / "run" / "model.keras"
    stamp = first_model.stat().st_mtime_ns

    again = run_cli(*flags, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "continuing the search" in again.stdout and "[trial 0]" not in again.stdout
    # trial 1 resumes from its checkpoint (or, killed while writing its first one, starts again)
    trial_1 = again.stdout.split("[trial 1]")[1].split("\n")[0]
    assert "resumed from step" in trial_1 or "its checkpoint was unreadable" in trial_1
    assert first_model.stat().st_mtime_ns == stamp
    assert "WARNING" not in again.stderr and again.stderr.count("\n") <= 1

    # the same search, never interrupted, finds the same trials with the same losses
    whole = run_cli(*flags, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    def table(path):
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in read_tune_csv(path / "tune.csv")]

    assert table(out) == table(tmp_path / "whole") and len(table(out)) == 3

    # the printed train command reproduces the best trial
    command = next(line for line in again.stdout.splitlines() if line.startswith("train it with: "))
    words = shlex.split(command.removeprefix("train it with: "))
    assert words[:2] == ["keras-makemore", "train"]
    retrain = run_cli(*words[1:], "--out", str(tmp_path / "retrain"), "--quiet")
    assert retrain.returncode == 0, retrain.stderr
    best = min(read_tune_csv(out / "tune.csv"), key=lambda r: r["val_loss"])
    assert rundir.best_val_loss(tmp_path / "retrain") == pytest.approx(best["val_loss"], abs=1e-6)

    # a search that differs in more than its budget is refused
    other = run_cli(*flags[:-1], "20m", "--out", str(out), "--evals", "2")
    assert other.returncode == 2 and other.stderr == (
        f"keras-makemore: error: --out {out} was searched with other settings (tune.evals 3, now 2): rerun with the "
        "original settings (only --budget may change), or choose another --out\n")


@pytest.mark.slow
def test_a_search_over_all_model_types_trains_each_from_its_own_preset(tmp_path, words_path):
    out = tmp_path / "all"
    # the grid goes through the model types first when every other row is fixed
    result = run_cli("tune", "--model", "all", "--data", str(words_path), "--tuner", "grid", "--max-trials", "3",
                     "--embed-dim", "8", "--hidden", "16", "--batch-size", "16", "--steps", "200", "--block-size", "4",
                     "--lr", "0.01", "--evals", "2", "--budget", "5m", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_tune_csv(out / "tune.csv")
    assert [r["model"] for r in rows] == ["mlp", "bigram", "wavenet"]
    assert all(r["status"] == "COMPLETED" and r["steps_trained"] == 200 for r in rows)
    assert rows[1]["block_size"] == rows[1]["embed_dim"] == rows[1]["hidden_units"] == ""  # bigram has none
    assert rows[1]["params"] == 27 * 27 and rows[2]["block_size"] == 4
    for row in rows:
        config, _ = rundir.read_config(out / "search" / f"trial_{row['trial']}" / "run")
        preset = TrainConfig.from_preset(TuneConfig().preset_of(row["model"]))
        assert config.model == row["model"]
        assert (config.optimizer, config.lr_schedule, config.weight_decay) == (
            preset.optimizer, preset.lr_schedule, preset.weight_decay)  # mlp: lecture's sgd; wavenet: adamw 0.05
    state = json.loads((out / "tune.json").read_text())
    assert {k for k in state["trials"] if k.startswith("probe")} == {"probe mlp", "probe bigram", "probe wavenet"}

    # best/ is a run directory `sample` takes, and the printed command trains the best trial again
    best = min(rows, key=lambda r: r["val_loss"])
    sampled = run_cli("sample", str(out / "best"), "-n", "5", "--seed", "1")
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.split()) == 5
    command = next(line for line in result.stdout.splitlines() if line.startswith("train it with: "))
    words = shlex.split(command.removeprefix("train it with: "))
    assert words[:4] == ["keras-makemore", "train", "--model", best["model"]] and "--preset" not in words
    retrain = run_cli(*words[1:], "--out", str(tmp_path / "retrain"), "--quiet")
    assert retrain.returncode == 0, retrain.stderr
    assert rundir.best_val_loss(tmp_path / "retrain") == pytest.approx(best["val_loss"], abs=1e-6)


@pytest.mark.slow
def test_a_word_model_search_starts_from_its_own_preset(tmp_path, words_path):
    config = TuneConfig(model="transformer", tuner="random", max_trials=2, evals=2, budget="5m")
    result = tune(config, config.base_configs(data=str(words_path)), tmp_path / "t", print_fn=lambda line: None,
                  fixed={"embed_dim": (8, 16), "hidden_units": 16, "layers": 1, "heads": 2, "batch_size": 16,
                         "steps": 200})
    assert len(result.rows) == 2 and all(r["status"] == "COMPLETED" and r["model"] == "transformer"
                                         for r in result.rows)
    preset = TrainConfig.from_preset("transformer")
    assert all(preset.lr / 4 <= r["lr"] <= preset.lr * 4 for r in result.rows)  # AdamW's 2e-3, not SGD's 0.2
    assert "block_size" not in result.rows[0]  # a word model sees the whole word
    assert (result.best_config.optimizer, result.best_config.weight_decay) == ("adamw", 0.1)
    assert rundir.read_config(result.best_dir)[0] == result.best_config
    run = Run.load(result.best_dir)
    assert run.config.block_size == 9  # the longest word of words.txt, and its end
    assert evaluate_splits(run.model, run.corpus(), ("val",))["val"].nll == pytest.approx(result.best["val_loss"],
                                                                                          abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["tune", "sweep"])
def test_without_keras_tuner_the_command_says_how_to_install_it(tmp_path, command):
    code = ("import sys; sys.modules['keras_tuner'] = None; from keras_makemore.cli import main; "
            f"sys.exit(main([{command!r}, '--out', {str(tmp_path / 'out')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert result.returncode == 2
    assert result.stderr == (f"keras-makemore: error: {command} needs KerasTuner, an optional extra: install it "
                             "with pip install 'keras-makemore[tune]'\n")
    assert not (tmp_path / "out").exists()


def test_a_budget_too_small_for_any_trial_starts_none(tmp_path, base):
    log = []
    result = tune(TuneConfig(budget="1s", tuner="random"), base, tmp_path / "s", fixed=TINY, print_fn=log.append)
    assert result.stopped == "budget" and result.rows == [] and result.best is None
    assert re.search(r"trial 0+ would take about \d+ s and 0 s of the budget are left", log[-1])
    assert "a larger --budget continues" in log[-1]
    state = json.loads((tmp_path / "s" / "tune.json").read_text())
    assert state["trials"]["probe mlp"]["step_seconds"] > 0  # measured on the first trial's network
    assert not list((tmp_path / "s" / "search").glob("trial_*/run"))


@pytest.mark.slow
def test_a_trial_that_does_not_fit_is_skipped_while_cheaper_ones_do(tmp_path, base):
    log = []
    fixed = TINY | {"embed_dim": (2, 4, 8), "hidden_units": 8, "steps": (200, 1_000_000_000)}
    result = tune(TuneConfig(tuner="random", max_trials=5, budget="90s", evals=2), dataclasses.replace(base, seed=1),
                  tmp_path / "s", fixed=fixed, print_fn=log.append)
    skipped = [line for line in log if "not started" in line]
    assert skipped and all("steps 1000000000" in line for line in skipped)
    assert re.search(r"not started: it would take about \d+ s and \d+ s of the budget are left", skipped[0])
    assert len(log) == 5 and result.stopped == "done"  # the search went on after the first skip
    assert len(result.rows) == 5 - len(skipped) and all(r["steps"] == 200 for r in result.rows)


def test_search_space_table_resolves_relative_ranges_and_fixed_values(base):
    space = search_space(TuneConfig(), base, fixed={"hidden_units": 64, "embed_dim": (8, 8, 16)})
    assert space["mlp"]["lr"] == (0.0025, 0.04, False)  # a quarter to 4x the base lr of 0.01
    assert space["mlp"]["embed_dim"] == (8, 16) and space["mlp"]["hidden_units"] == (64,)
    with pytest.raises(UserError, match="dropout is not searched") as e:
        search_space(TuneConfig(), base, fixed={"dropout": 0.1})
    assert e.value.argument == "dropout"


def test_every_model_type_has_a_space_of_its_own_fields_centred_on_its_own_preset():
    assert tuple(TUNE_MODELS) == MODEL_NAMES
    space = search_space(TuneConfig(model="all"), None)  # each model type's own preset; every combination trains
    for model, rows in space.items():
        model_type = get_model_type(model)
        preset = TrainConfig.from_preset(TuneConfig(model="all").preset_of(model))
        assert preset.model == model
        # only the optimizer's rows and the fields the network reads: nothing searched that it would ignore
        assert set(rows) <= set(TUNE_SPACE) | set(model_type.hyperparameters), model
        assert rows["lr"] == (preset.lr / 4, preset.lr * 4, False)
        for name in set(rows) - {"lr"} - ({"steps"} if model == "mlp" else set()):  # the MLP's: below
            values = rows[name]
            assert min(values) <= getattr(preset, name) <= max(values), (model, name)  # the preset is inside
    assert "block_size" not in space["transformer"] and "block_size" not in space["gru"]
    assert set(space["bigram"]) == {"lr", "batch_size", "steps"}
    assert space["transformer"]["steps"] == (12_000, 24_000, 48_000) and space["bigram"]["steps"] == (1_000, 2_000, 4_000)
    assert space["transformer"]["batch_size"] == (16, 32, 64)  # rows of packed words, around the preset's 32
    assert space["mlp"]["steps"] == (5_000, 10_000, 20_000, 40_000)  # the MLP's rows aim at a run of a minute

    # a fixed value replaces the row of each model type that has one, and must suit each
    fixed = search_space(TuneConfig(model="all"), None, fixed={"block_size": (4, 8), "lr": 0.01})
    assert fixed["mlp"]["block_size"] == fixed["wavenet"]["block_size"] == (4, 8)
    assert "block_size" not in fixed["rnn"] and all(rows["lr"] == (0.01,) for rows in fixed.values())
    with pytest.raises(UserError, match="model wavenet cannot train every combination searched: block_size must be "
                                        "a power of two") as e:
        search_space(TuneConfig(model="all"), None, fixed={"block_size": 3})
    assert e.value.argument == "block_size"
    with pytest.raises(UserError, match="embed_dim 36 must be a multiple of heads 8"):
        search_space(TuneConfig(model="transformer"), None, fixed={"embed_dim": 36})


def test_an_explicit_preset_is_the_base_of_the_model_type_it_was_made_for():
    bases = TuneConfig(model="all", preset="mlp-best").base_configs(split_seed=7)
    assert bases["mlp"] == TrainConfig.from_preset("mlp-best", split_seed=7)
    assert bases["transformer"] == TrainConfig.from_preset("transformer", split_seed=7)
    assert TuneConfig(model="gru").base_configs() == {"gru": TrainConfig.from_preset("gru")}
    assert TuneConfig(model="mlp").base_configs()["mlp"] == TrainConfig.from_preset("lecture")
    with pytest.raises(UserError, match="preset mlp-best was made for model mlp, which model gru does not "
                                        "search") as e:
        TuneConfig(model="gru", preset="mlp-best").validate()
    assert e.value.argument == "preset"


def test_a_trial_holds_only_the_values_of_its_own_model_type():
    config = TuneConfig(model="all", tuner="random")
    bases = config.base_configs()
    space = search_space(config, bases)
    hypermodel = TrainConfigHyperModel(bases, space, evals=10)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", hyperparameters=hp, seed=1)
    drawn = set()
    for i in range(60):
        values = oracle.populate_space(str(i))["values"]
        model = values["model"]
        assert set(values) == {"model"} | {f"{model}/{name}" for name in space[model]}
        trial_config = hypermodel.config(keras_tuner.HyperParameters.from_config(
            {**hp.get_config(), "values": values}))
        assert trial_config.model == model and trial_config.optimizer == bases[model].optimizer
        for name in space[model]:
            assert getattr(trial_config, name) == pytest.approx(values[f"{model}/{name}"])
        assert trial_config.eval_every * 10 == trial_config.steps
        drawn.add(model)
    assert drawn == set(MODEL_NAMES)


def test_time_estimates_come_from_the_same_model_type():
    budget = Budget(None, 60, {"seconds_used": 0.0, "trials": {
        "probe mlp": {"model": "mlp", "work": 1_000, "params": 100, "step_seconds": 1e-3, "eval_seconds": 0.1,
                      "fixed_seconds": 2.0},
        "probe transformer": {"model": "transformer", "work": 1_000, "params": 100, "step_seconds": 2e-2,
                              "eval_seconds": 0.5, "fixed_seconds": 9.0}}})
    assert budget.estimate("mlp", 1_000, 100, 1_000, 2) == pytest.approx(1 + 0.2 + 2)
    assert budget.estimate("transformer", 1_000, 100, 1_000, 2) == pytest.approx(20 + 1 + 9)
    assert budget.estimate("gru", 1_000, 100, 1_000, 2) is None  # not measured yet: the search probes it


@pytest.mark.parametrize("budget, seconds", [("15m", 900), ("1h30m", 5400), ("90s", 90), ("45", 45), ("0.5h", 1800)])
def test_budget_durations(budget, seconds):
    assert TuneConfig(budget=budget).budget_seconds() == seconds


@pytest.mark.parametrize("budget", ["", "15minutes", "0m", "-1m"])
def test_a_budget_that_is_no_duration_is_refused(budget):
    with pytest.raises(UserError, match="budget") as e:
        TuneConfig(budget=budget).validate()
    assert e.value.argument == "budget"


def test_step_time_estimate_interpolates_between_measured_networks():
    points = [(1_000, 1e-4), (10_000, 4e-4)]
    assert _scaled(500, points) == 1e-4  # per-step overhead does not shrink below the smallest network's
    assert _scaled(5_500, points) == pytest.approx(2.5e-4)
    assert _scaled(20_000, points) == pytest.approx(8e-4)  # proportional above the largest


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt  # BackupAndRestore, listed earlier, has saved the epoch


class _WeightsAtEnd(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        self.weights = self.model.get_weights()


@pytest.fixture(scope="module")
def overfitting(words_path):
    # 66 words and 60 validation passes: val loss is lowest at pass 5 (of 0..6), then rises
    return TrainConfig(data=str(words_path), block_size=3, embed_dim=8, hidden_units=64, batch_size=32, steps=1500,
                       eval_every=25, optimizer="adam", lr=0.002, lr_schedule="constant", seed=1, early_stop=2)


@pytest.mark.slow
def test_early_stop_restores_the_best_weights_and_resumes_to_the_same_stop(tmp_path, overfitting):
    at_end = _WeightsAtEnd()
    whole = train(overfitting, tmp_path / "whole", verbose=0, callbacks=[at_end])
    val = whole.history["val_loss"]
    best_epoch = int(np.argmin(val))
    assert len(val) == best_epoch + 1 + 2 < 60  # stopped two passes after the best
    assert val[-1] > val[best_epoch]
    for fitted, saved in zip(at_end.weights, whole.model.get_weights()):  # fit's model holds the best weights
        np.testing.assert_array_equal(fitted, saved)
    assert evaluate_splits(whole.model, whole.corpus, ("val",))["val"].nll == pytest.approx(min(val), abs=1e-6)
    assert json.loads((whole.run_dir / "history.json").read_text())["val_loss"] == val

    # interrupted one pass after the best, resumed: the patience carries on, and the run stops where it did
    with pytest.raises(KeyboardInterrupt):
        train(overfitting, tmp_path / "resumed", verbose=0, callbacks=[_Interrupt(best_epoch + 1)])
    at_end = _WeightsAtEnd()
    resumed = train(None, tmp_path / "resumed", verbose=0, resume=True, callbacks=[at_end])
    assert resumed.history["val_loss"] == val
    for fitted, saved in zip(at_end.weights, whole.model.get_weights()):
        np.testing.assert_array_equal(fitted, saved)


def test_early_stop_must_be_positive(overfitting):
    with pytest.raises(UserError, match="early_stop must be at least 1") as e:
        dataclasses.replace(overfitting, early_stop=0).validate()
    assert e.value.argument == "early_stop"
