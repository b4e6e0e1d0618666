"""Faults of the disk and of interruption: a full disk at any write, a 0-byte backup, two resumes.

After a failure at any write the run either resumes to the very weights of an
uninterrupted run, or says that it cannot and how to start again. The full
disks are small tmpfs mounts (root only: CI runs as root), filled to within a
few KB of the write under test, or by a concurrent process.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, fill_disk, mounted_tmpfs, run_cli

from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig

TINY = ("--block-size", "3", "--hidden", "24", "--embed-dim", "4", "--batch-size", "16", "--optimizer", "adam",
        "--lr", "0.01", "--seed", "7", "--quiet", "--samples", "0")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs, mounted for the test and unmounted after it."""
    yield from mounted_tmpfs(tmp_path, "3m")


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr[-3000:]
    return lines[0]


def _weights(run_dir: Path) -> list:
    from keras_makemore.training.run import load_model

    return load_model(run_dir / rundir.MODEL_FILE).get_weights()


def _same_weights(a: Path, b: Path) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))


@pytest.fixture(scope="module")
def model_with_state():
    """A compiled model with its optimizer's state: about 420 KB of checkpoint."""
    import keras

    from keras_makemore.models.mlp import build_model

    model = build_model(27, 3, 10, 600, seed=0)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_full_disk_at_the_backup_write_keeps_the_checkpoint_before(small_disk, model_with_state):
    from keras_makemore.training.callbacks import AtomicBackupAndRestore

    model = model_with_state
    backup = AtomicBackupAndRestore(small_disk / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0)
    first = small_disk / "backup" / "epoch-000001.weights.h5"
    size = first.stat().st_size
    assert size > 200_000
    before = first.read_bytes()
    fill_disk(small_disk, leave=size - 4096)  # the next checkpoint misses by a few KB
    with pytest.raises(OSError) as raised:
        backup.on_epoch_end(1)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename.endswith("epoch-000002.weights.h5")
    assert sorted(os.listdir(small_disk / "backup")) == ["epoch-000001.weights.h5"]  # no torn or 0-byte file
    assert first.read_bytes() == before
    restored = AtomicBackupAndRestore(small_disk / "backup")
    restored.set_model(model)
    restored.on_train_begin()
    assert restored.restored_epoch == 1 and not restored.skipped


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, model_with_state):
    from keras_makemore.training.callbacks import AtomicBackupAndRestore

    model = model_with_state
    backup = AtomicBackupAndRestore(tmp_path / "backup")
    backup.set_model(model)
    backup.on_epoch_end(0)
    backup.on_epoch_end(1)
    backup.on_epoch_end(2)
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch-000002.weights.h5", "epoch-000003.weights.h5"]
    (tmp_path / "backup" / "epoch-000003.weights.h5").write_bytes(b"")
    restored = AtomicBackupAndRestore(tmp_path / "backup")
    restored.set_model(model)
    restored.on_train_begin()
    assert restored.restored_epoch == 2 and restored.skipped == ["epoch-000003.weights.h5 (OSError)"]


@pytest.mark.slow
def test_a_disk_filled_by_another_process_during_training_resumes_to_the_same_weights(
        small_disk, tmp_path, words_path):
    """The issue's reproduction: a second process fills the disk once history.csv has 2 rows."""
    flags = ("--data", str(words_path), "--steps", "3000", "--eval-every", "100", *TINY)
    run = small_disk / "run"

    def filler():
        while True:
            try:
                if len((run / rundir.HISTORY_CSV).read_text().splitlines()) >= 3:
                    break
            except OSError:
                pass
            time.sleep(0.005)
        fill_disk(small_disk)

    thread = threading.Thread(target=filler, daemon=True)
    thread.start()
    line = _one_line_error(run_cli("train", "--out", str(run), *flags))
    thread.join()
    assert line.startswith("keras-makemore: error: no space left on device")
    assert line.endswith("training stopped, and what it saved is intact: free some space, then continue with "
                         f"`keras-makemore train --resume {run}`")
    assert not [p for p in run.rglob("*") if ".tmp" in p.name or p.stat().st_size == 0]
    assert not (run / rundir.HISTORY_JSON).exists()

    (small_disk / "filler").unlink()
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = tmp_path / "whole"
    assert run_cli("train", "--out", str(whole), *flags).returncode == 0
    assert _same_weights(run, whole)
    assert (run / rundir.HISTORY_CSV).read_text() == (whole / rundir.HISTORY_CSV).read_text()
    assert not (run / rundir.BACKUP_DIR).exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, words_path):
    from keras_makemore.training.recipe import train

    config = TrainConfig(data=str(words_path), block_size=3, embed_dim=4, hidden_units=24, batch_size=16,
                         steps=60, eval_every=20, optimizer="adam", lr=0.01, seed=7)
    return train(config, tmp_path_factory.mktemp("disk") / "run", verbose=0)


@pytest.mark.parametrize("disk", ["full", "read-only"])
def test_a_failure_at_the_final_history_write_is_resumed_without_training_again(
        small_disk, finished_run, monkeypatch, disk, capsys):
    from keras_makemore.training.recipe import train

    write_history = rundir.write_history

    def fail_then_write(run_dir, *args):
        if disk == "full":
            fill_disk(small_disk)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
        write_history(run_dir, *args)

    run = small_disk / "run"
    monkeypatch.setattr(rundir, "write_history", fail_then_write)
    with pytest.raises(OSError) as raised:
        train(finished_run.config, run, verbose=0)
    assert raised.value.errno == (errno.ENOSPC if disk == "full" else errno.EROFS)
    monkeypatch.undo()
    if disk == "full":
        (small_disk / "filler").unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert (run / rundir.BACKUP_DIR).is_dir() and not (run / rundir.HISTORY_JSON).exists()
    model_bytes = (run / rundir.MODEL_FILE).read_bytes()
    result = train(None, run, verbose=1, resume=True)
    assert f"from its checkpoint at step {finished_run.config.steps}" in capsys.readouterr().out
    assert (run / rundir.MODEL_FILE).read_bytes() == model_bytes  # nothing trained again
    assert result.history == finished_run.history
    assert json.loads((run / rundir.HISTORY_JSON).read_text())["val_loss"] == finished_run.history["val_loss"]
    assert not (run / rundir.BACKUP_DIR).exists()
    assert _same_weights(run, finished_run.run_dir)


def _interrupted_copy(run: Path, into: Path) -> Path:
    """`run` as if it stopped before its first checkpoint: no history.json, no usable backup."""
    shutil.copytree(run, into)
    (into / rundir.HISTORY_JSON).unlink()
    return into


@pytest.mark.slow
def test_a_zero_byte_first_backup_never_blocks_the_run(tmp_path, finished_run):
    """keras-makemore 0.x left a 0-byte latest.weights.h5 (no .bkp) when the disk filled at the first backup."""
    run = _interrupted_copy(finished_run.run_dir, tmp_path / "run")
    (run / rundir.BACKUP_DIR).mkdir()
    (run / rundir.BACKUP_DIR / "latest.weights.h5").write_bytes(b"")
    again = _one_line_error(run_cli("train", "--out", str(run), "--quiet"))
    assert again == (f"keras-makemore: error: --out {run} holds an interrupted run: continue it with --resume, "
                     "or choose another --out")
    result = run_cli("train", "--resume", str(run), "--samples", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped damaged checkpoints" in result.stdout and "latest.weights.h5 (OSError)" in result.stdout
    assert "has no usable checkpoint (it stopped before its first one): training it from step 0" in result.stdout
    assert _same_weights(run, finished_run.run_dir)  # step 0 is where it stopped: the same run
    assert not (run / rundir.BACKUP_DIR).exists()


@pytest.mark.slow
def test_two_resumes_of_one_run_cannot_run_at_once(tmp_path, finished_run):
    run = _interrupted_copy(finished_run.run_dir, tmp_path / "run")
    with rundir.run_lock(run):  # this process trains it, as far as any other can tell
        line = _one_line_error(run_cli("train", "--resume", str(run)))
    assert line == (f"keras-makemore: error: --resume {run} is busy: another process is training or exporting it; "
                    "wait for it to end, or stop it first")
    assert sorted(os.listdir(run)) == sorted(set(os.listdir(finished_run.run_dir)) - {rundir.HISTORY_JSON})


@pytest.mark.slow
@pytest.mark.parametrize("change", ["more names", "a new character"])
def test_resume_refuses_changed_data(tmp_path, finished_run, words_path, change):
    data = tmp_path / "words.txt"
    shutil.copy(words_path, data)
    from keras_makemore.training.recipe import train

    config = TrainConfig.from_json(finished_run.config.to_json() | {"data": str(data), "steps": 40})
    run = tmp_path / "run"
    train(config, run, verbose=0)
    (run / rundir.HISTORY_JSON).unlink()
    with open(data, "a", encoding="utf-8") as f:
        f.write("zelda\nmarta\n" if change == "more names" else "zoë\n")
    line = _one_line_error(run_cli("train", "--resume", str(run)))
    assert line == (f"keras-makemore: error: --data file {data} changed since the run started (its sha256 differs "
                    "from the one in config.json): a resumed run must train on the same words; put the original "
                    "file back, or train a new run on the changed file")


def test_a_run_lock_is_released_when_the_process_ends(tmp_path):
    script = "from pathlib import Path; from keras_makemore.training import rundir\n" \
             f"with rundir.run_lock(Path({str(tmp_path)!r})): print('held', flush=True); input()\n"
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        from keras_makemore.errors import UserError

        with pytest.raises(UserError, match="is busy: another process is training or exporting it"):
            with rundir.run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rundir.run_lock(tmp_path):  # killed: the lock went with it
        pass
