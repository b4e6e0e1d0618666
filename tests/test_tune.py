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

from conftest import ROOT, run_cli
from keras_makemore import rundir
from keras_makemore.config import TrainConfig, TuneConfig
from keras_makemore.errors import UserError
from keras_makemore.evaluation import evaluate_splits
from keras_makemore.runs import Run
from keras_makemore.training import train
from test_plots import assert_readable_png

pytest.importorskip("keras_tuner")

from keras_makemore.tune import _scaled, read_tune_csv, search_space, tune  # noqa: E402

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
    assert state["trials"]["probe"]["step_seconds"] > 0  # measured on the first trial's network
    assert not list((tmp_path / "s" / "search").glob("trial_*/run"))


def test_search_space_table_resolves_relative_ranges_and_fixed_values(base):
    space = search_space(TuneConfig(), base, fixed={"hidden_units": 64, "embed_dim": (8, 8, 16)})
    assert space["shared"]["lr"] == (0.0025, 0.04, False)  # a quarter to 4x the base lr of 0.01
    assert space["shared"]["embed_dim"] == (8, 16) and space["models"]["mlp"]["hidden_units"] == (64,)
    with pytest.raises(UserError, match="dropout is not searched") as e:
        search_space(TuneConfig(), base, fixed={"dropout": 0.1})
    assert e.value.argument == "dropout"


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
