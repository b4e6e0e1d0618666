"""Bad input gives one clear line; interrupted training resumes; artifacts are never half-written."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import run_cli

from keras_makemore import atomic
from keras_makemore.cli import main
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train

TINY = ("--steps", "40", "--eval-every", "20", "--hidden", "8", "--embed-dim", "2", "--quiet")


def _cli_error(capsys, *args) -> str:
    """Run the CLI in-process; it must fail with exit code 2 and exactly one line on stderr."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {
        "empty": b"",
        "blank": b"\n   \n\t\n",
        "binary": bytes(range(256)),
        "latin1": "café\nnaïve\n".encode("latin-1"),
        "few": b"ab\ncd\nef\n",
    }
    for name, content in files.items():
        (d / name).write_bytes(content)
    return d


@pytest.mark.parametrize("name, expected", [
    ("missing", "not found"),
    ("empty", "has no words"),
    ("blank", "has no words"),
    ("binary", "looks binary"),
    ("latin1", "not UTF-8"),
    ("few", "at least 6 words"),
])
def test_bad_data_files(capsys, tmp_path, bad_files, name, expected):
    line = _cli_error(capsys, "train", "--data", str(bad_files / name), "--out", str(tmp_path / "r"), *TINY)
    assert expected in line


@pytest.mark.parametrize("flags, expected", [
    (("--block-size", "0"), "error: --block-size must be at least 1, got 0"),
    (("--block-size", "100000"), "error: --block-size must be at most 1024"),
    (("--hidden-units", "1000000000"), "error: --hidden-units 1000000000 with embed_dim 2 and block_size 3 would make"),
    (("--lr", "-1"), "error: --lr must be a positive number, got -1.0"),
])
def test_absurd_sizes(capsys, tmp_path, words_path, flags, expected):
    line = _cli_error(capsys, "train", "--data", str(words_path), "--out", str(tmp_path / "r"), *TINY, *flags)
    assert expected in line


def test_unwritable_output_directory(capsys, tmp_path, words_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = _cli_error(capsys, "train", "--data", str(words_path), "--out", str(blocker / "run"), *TINY)
    assert f"error: --out {blocker / 'run'} cannot be written: Not a directory; choose another --out" in line


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, words_path):
    run_dir = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", "--data", str(words_path), "--out", str(run_dir), *TINY]) == 0
    return run_dir


def _copy_run(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_run_directory_problems(capsys, tmp_path, good_run):
    assert "not found" in _cli_error(capsys, "sample", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "holds no trained model" in _cli_error(capsys, "evaluate", str(tmp_path / "empty"))
    assert "not in the vocabulary" in _cli_error(capsys, "sample", str(good_run), "--prefix", "Ω")
    assert "temperature" in _cli_error(capsys, "sample", str(good_run), "--temperature", "0")


def test_corrupt_artifacts(capsys, tmp_path, good_run):
    broken = _copy_run(good_run, tmp_path / "broken-model")
    (broken / "model.keras").write_bytes(os.urandom(2000))
    assert "corrupt" in _cli_error(capsys, "sample", str(broken))

    truncated = _copy_run(good_run, tmp_path / "truncated-model")
    data = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    assert "corrupt" in _cli_error(capsys, "sample", str(truncated))

    bad_vocab = _copy_run(good_run, tmp_path / "bad-vocab")
    (bad_vocab / "vocab.json").write_text('{"chars": [')
    assert "vocabulary file" in _cli_error(capsys, "sample", str(bad_vocab))

    mismatch = _copy_run(good_run, tmp_path / "mismatch")
    Vocabulary(list("abc")).save(mismatch / "vocab.json")
    assert "different runs" in _cli_error(capsys, "evaluate", str(mismatch))

    bad_config = _copy_run(good_run, tmp_path / "bad-config")
    (bad_config / "config.json").write_text("{not json")
    assert "corrupt" in _cli_error(capsys, "sample", str(bad_config))


def test_resume_problems(capsys, tmp_path, good_run):
    assert "already finished" in _cli_error(capsys, "train", "--resume", str(good_run))
    assert "no run to resume" in _cli_error(capsys, "train", "--resume", str(tmp_path))
    assert "already holds a run" in _cli_error(capsys, "train", "--data", "x", "--out", str(good_run))


@pytest.mark.slow
def test_errors_in_a_real_subprocess_have_no_traceback(tmp_path, bad_files):
    result = run_cli("train", "--data", str(bad_files / "binary"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "looks binary" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_uninterrupted_result(tmp_path, words_path):
    args = ["--data", str(words_path), "--steps", "6000", "--eval-every", "300", "--optimizer", "adam",
            "--lr", "0.01", "--hidden", "32", "--embed-dim", "4", "--seed", "5", "--quiet", "--samples", "0"]
    run_dir = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "keras_makemore", "train", "--out", str(run_dir), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run_dir / "history.csv"
    deadline = time.monotonic() + 240
    while not (history.exists() and len(history.read_text().splitlines()) >= 4):  # header + 3 epochs
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / "backup").is_dir() and not (run_dir / "history.json").exists()
    # Whatever the kill interrupted, every artifact on disk is whole.
    json.loads((run_dir / "config.json").read_text())
    Vocabulary.load(run_dir / "vocab.json")
    keras.saving.load_model(run_dir / "model.keras")
    assert not [f for f in os.listdir(run_dir) if ".tmp" in f]

    resumed = run_cli("train", "--resume", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert not (run_dir / "backup").exists()

    reference = run_cli("train", "--out", str(tmp_path / "reference"), *args)
    assert reference.returncode == 0, reference.stderr
    got = json.loads((run_dir / "history.json").read_text())
    want = json.loads((tmp_path / "reference" / "history.json").read_text())
    assert got["epoch"] == list(range(20))
    assert round(got["val_loss"][-1], 3) == round(want["val_loss"][-1], 3)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-6)


def test_nan_stops_training_and_keeps_the_best_checkpoint(tmp_path, words_path):
    config = TrainConfig(data=str(words_path), steps=900, eval_every=300, hidden_units=16, embed_dim=3,
                         lr=0.1, lr_drops=[(301, 1e38)], seed=1)  # overflows the weights
    run_dir = tmp_path / "nan"
    with pytest.raises(UserError, match="lr 0.1 made training diverge: the loss became nan .*lower it"):
        train(config, run_dir, verbose=0)
    rows = (run_dir / "history.csv").read_text().splitlines()
    first_val = float(rows[1].split(",")[2])
    assert math.isfinite(first_val)
    model = keras.saving.load_model(run_dir / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "artifact.json"
    atomic.write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text('{"version": 2, "half')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["artifact.json"]


def test_training_leaves_no_temporary_files(good_run):
    assert sorted(os.listdir(good_run)) == ["config.json", "history.csv", "history.json", "model.keras", "vocab.json"]


def test_a_one_megabyte_line_and_ten_thousand_characters(tmp_path):
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghij"))
    long_word = "".join(rng.choice(letters, 1_000_000))
    cjk = [chr(0x4E00 + i) for i in range(10_000)]
    words = ["".join(cjk[i:i + 5]) for i in range(0, 10_000, 5)] + [long_word]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(words), encoding="utf-8")
    config = TrainConfig(data=str(path), steps=20, eval_every=20, hidden_units=8, embed_dim=2, seed=0)
    result = train(config, tmp_path / "run", verbose=0)
    assert result.corpus.vocab.size == 10_011
    assert result.model.output_shape == (None, 10_011)
    assert main(["sample", str(tmp_path / "run"), "-n", "3", "--seed", "0"]) == 0
