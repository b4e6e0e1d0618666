"""A real two-cell sweep: its rows match separately trained runs, and a restart skips finished cells."""

import dataclasses
import json
import subprocess
import sys

import keras
import pytest
from conftest import assert_readable_png, run_cli

from keras_makemore.analysis.evaluation import evaluate_splits
from keras_makemore.analysis.plots import plot_sweep
from keras_makemore.errors import UserError
from keras_makemore.search.sweep import read_sweep_csv, sweep
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train


class _InterruptAfterFirstInterval(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt  # BackupAndRestore, listed earlier, has saved the epoch


@pytest.fixture
def base(words_path):
    # the settings that `keras-makemore sweep` builds from the flags used below
    return TrainConfig(data=str(words_path.resolve()), batch_size=16, steps=400, eval_every=200,
                       optimizer="adam", lr=0.01, seed=5)


@pytest.mark.slow
def test_sweep_matches_separate_runs_and_skips_finished_cells(tmp_path, base):
    out = tmp_path / "sweep"
    log = []
    first = sweep(base, out, hidden_units=[8], embed_dims=[2], block_sizes=[3], print_fn=log.append)
    assert [r["cell"] for r in first] == ["block3-embed2-hidden8"] and "trained;" in log[0]
    model_a = out / "block3-embed2-hidden8" / "model.keras"
    stamp = model_a.stat().st_mtime_ns

    # the second cell is stopped after its first validation pass, as a killed sweep would leave it
    config_b = dataclasses.replace(base, embed_dim=2, hidden_units=24)
    with pytest.raises(KeyboardInterrupt):
        train(config_b, out / "block3-embed2-hidden24", verbose=0, callbacks=[_InterruptAfterFirstInterval()])

    log.clear()
    rows = sweep(base, out, hidden_units=[8, 24], embed_dims=[2], block_sizes=[3], print_fn=log.append)
    assert "done before, skipped" in log[0] and "resumed and trained" in log[1]
    assert model_a.stat().st_mtime_ns == stamp
    assert read_sweep_csv(out / "sweep.csv") == rows
    assert_readable_png(out / "sweep.png")

    for row, hidden in zip(rows, [8, 24]):
        config = dataclasses.replace(base, embed_dim=2, hidden_units=hidden)
        alone = train(config, tmp_path / f"alone{hidden}", verbose=0)
        losses = evaluate_splits(alone.model, alone.corpus, ("train", "val"))
        assert row["params"] == alone.model.count_params()
        assert row["train_loss"] == pytest.approx(losses["train"].nll, abs=1e-6)
        assert row["val_loss"] == pytest.approx(losses["val"].nll, abs=1e-6)
        assert row["steps"] == 400 and (row["block_size"], row["embed_dim"], row["hidden_units"]) == (3, 2, hidden)
        assert row["verdict"] in {"underfitting", "balanced", "overfitting"} and row["wall_seconds"] > 0

    csv_before = (out / "sweep.csv").read_bytes()
    again = run_cli("sweep", "--data", base.data, "--out", str(out), "--hidden", "8", "24", "--embed-dim", "2",
                    "--block-size", "3", "--steps", "400", "--eval-every", "200", "--batch-size", "16",
                    "--optimizer", "adam", "--lr", "0.01", "--seed", "5")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("done before, skipped") == 2 and "trained;" not in again.stdout
    assert "best val loss" in again.stdout and "WARNING" not in again.stderr
    assert (out / "sweep.csv").read_bytes() == csv_before
    assert model_a.stat().st_mtime_ns == stamp

    with pytest.raises(UserError, match="other settings .*steps 400, now 800"):
        sweep(dataclasses.replace(base, steps=800), out, hidden_units=[8], embed_dims=[2], block_sizes=[3])


def test_sweep_plot_of_a_three_by_two_grid(tmp_path):
    rows = [{"cell": f"block3-embed{e}-hidden{h}", "block_size": 3, "embed_dim": e, "hidden_units": h,
             "params": 27 * e + (3 * e + 1) * h + (h + 1) * 27, "train_loss": 2.5 - h / 1000 - e / 100,
             "val_loss": 2.55 - h / 2000 - e / 100} for e in (2, 10) for h in (50, 100, 200)]
    title = assert_readable_png(plot_sweep(rows, tmp_path / "sweep.png", title="a test sweep"))["Title"]
    assert title == "a test sweep"


_TRAIN_THEN_SWEEP = """
import json, sys
import tensorflow as tf
from keras_makemore.training.config import TrainConfig
from keras_makemore.search.sweep import sweep
from keras_makemore.training.recipe import train
base = TrainConfig.from_json(json.loads(sys.argv[1]))
train(base, sys.argv[2] + "/first", verbose=0, num_samples=0)  # a step this small takes one thread
rows = sweep(base, sys.argv[2] + "/sweep", hidden_units=[8], embed_dims=[2], block_sizes=[3], print_fn=print)
print(json.dumps({"threads": tf.config.threading.get_intra_op_parallelism_threads(), "cells": len(rows)}))
"""


@pytest.mark.slow
def test_a_sweep_after_a_training_in_the_same_process_runs_on_its_threads(tmp_path, base):
    # A notebook trains a small network (one intra-op thread, fixed from then on), then sweeps.
    out = subprocess.run([sys.executable, "-c", _TRAIN_THEN_SWEEP,
                          json.dumps(dataclasses.replace(base, steps=200).to_json()), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"threads": 1, "cells": 1}
