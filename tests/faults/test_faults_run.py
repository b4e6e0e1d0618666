"""Faults on the run side: each is one line on stderr, exit 2, no traceback, nothing saved lost."""

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import fill_disk, mounted_tmpfs, run_cli

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses

TINY = ("--steps", "40", "--eval-every", "20", "--hidden", "8", "--embed-dim", "2", "--quiet", "--samples", "0")


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, words_path):
    path = tmp_path_factory.mktemp("faults") / "run"
    result = run_cli("train", "--data", str(words_path), "--out", str(path), *TINY)
    assert result.returncode == 0, result.stderr
    return path


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("config, expected", [
    ('{"block_size": "three"}', "config.json is corrupt (block_size must be an int, got 'three')"),
    ("[1, 2, 3]", "config.json is corrupt (config must be a JSON object of settings, got list)"),
])
def test_resume_with_a_config_of_wrong_types(tmp_path, config, expected):
    (tmp_path / "config.json").write_text(config)
    line = _one_line_error(run_cli("train", "--resume", str(tmp_path)))
    assert expected in line and "retrain the run, or restore the file" in line
    assert (tmp_path / "config.json").read_text() == config


def test_resume_refuses_a_flag_that_would_change_the_run(tmp_path, words_path):
    (tmp_path / "config.json").write_text(json.dumps({"data": str(words_path)}))
    line = _one_line_error(run_cli("train", "--resume", str(tmp_path), "--data", str(words_path)))
    assert line == ("keras-makemore: error: --data cannot change when resuming: a resumed run keeps its own "
                    "settings; drop it, or train a new run")


def test_negative_samples_are_refused(tmp_path):
    line = _one_line_error(run_cli("train", "--out", str(tmp_path / "r"), "--samples", "-1"))
    assert "argument --samples: must be 0 or more, got -1" in line
    assert not (tmp_path / "r").exists()


def test_plot_into_a_file_where_a_directory_is_expected(tmp_path, run_dir):
    blocker = tmp_path / "plots"
    blocker.write_text("not a directory")
    line = _one_line_error(run_cli("plot", str(run_dir), "--out", str(blocker)))
    assert line == (f"keras-makemore: error: --out {blocker} is a file, not a directory: "
                    "pass a directory for the PNG files")
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("module, name", [("os", "system"), ("subprocess", "Popen")])
def test_a_model_naming_code_is_refused_and_never_runs(tmp_path, run_dir, module, name):
    planted = tmp_path / "planted"
    planted.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and f.name != "model.keras":
            (planted / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(run_dir / "model.keras") as src, zipfile.ZipFile(planted / "model.keras", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                config.update(module=module, class_name=name, registered_name=None,
                              config={"args": [f"touch {marker}"], "command": f"touch {marker}"})
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    line = _one_line_error(run_cli("sample", str(planted), "-n", "1", "--seed", "0"))
    assert f"model file {planted / 'model.keras'} is corrupt or not a keras-makemore model" in line
    assert not marker.exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, mounted for the test and unmounted after it."""
    yield from mounted_tmpfs(tmp_path, "1m")


FULL_DISK = ("keras-makemore: error: no space left on device", "free some space or write elsewhere, then run the "
             "command again (what was saved before is intact)")


def test_train_on_a_full_disk(small_disk, words_path):
    out = small_disk / "run"
    # A model too large for the disk: its first checkpoint cannot be written.
    result = run_cli("train", "--data", str(words_path), "--out", str(out), "--steps", "40", "--eval-every", "20",
                     "--hidden", "4000", "--embed-dim", "8", "--quiet", "--samples", "0")
    line = _one_line_error(result)
    assert line.startswith(FULL_DISK[0]) and line.endswith(
        f"training stopped, and what it saved is intact: free some space, then continue with "
        f"`keras-makemore train --resume {out}`")
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    json.loads((out / "config.json").read_text())  # what was written is whole


@pytest.mark.parametrize("command", ["report", "plot"])
def test_report_and_plot_on_a_full_disk_leave_the_run_intact(small_disk, run_dir, command):
    copy = small_disk / "run"
    copy.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    before = _digests(copy)
    fill_disk(small_disk)
    line = _one_line_error(run_cli(command, str(copy)))
    assert line.startswith(FULL_DISK[0]) and line.endswith(FULL_DISK[1])
    assert _digests(copy) == before


def _copy_run(source: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_export_of_a_busy_run_says_so_at_once(tmp_path, run_dir):
    from keras_makemore.training import rundir

    run = _copy_run(run_dir, tmp_path / "run")
    (run / "history.json").unlink()  # a run being trained has no history.json yet
    before = _digests(run)
    with rundir.run_lock(run):  # a training of the run, as far as export can tell
        result = run_cli("export", str(run), timeout=120)
    line = _one_line_error(result)
    assert line == (f"keras-makemore: error: RUN_DIR {run} is busy: another process is training or exporting it; "
                    "wait for it to end, or stop it first")
    assert _digests(run) == before and not (run / "export").exists()


def test_resume_while_the_run_is_exported_says_so_at_once(tmp_path, run_dir):
    """`export RUN` holds the run's lock while it writes; `train --resume RUN` meanwhile is refused, not blocked."""
    import sys
    import time

    from conftest import ROOT

    run = _copy_run(run_dir, tmp_path / "run")
    (run / "history.json").unlink()  # an interrupted run, as far as --resume can tell
    script = ("import sys, time; from pathlib import Path; from keras_makemore.artifacts import writer as export\n"
              "real = export._export_locked\n"
              "def slow(*a, **k):\n    print('exporting', flush=True); time.sleep(60); return real(*a, **k)\n"
              "export._export_locked = slow\n"
              f"export.export_run(Path({str(run)!r}), check=False)\n")
    exporter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert exporter.stdout.readline().strip() == "exporting"
        started = time.monotonic()
        line = _one_line_error(run_cli("train", "--resume", str(run), timeout=120))
        assert time.monotonic() - started < 60
    finally:
        exporter.kill()
        exporter.wait()
    assert line == (f"keras-makemore: error: --resume {run} is busy: another process is training or exporting it; "
                    "wait for it to end, or stop it first")


@pytest.mark.parametrize("name, command", [
    ("model.keras", "sample"), ("config.json", "score"), ("vocab.json", "sample"), ("history.csv", "plot"),
    ("model.keras", "evaluate"), ("history.csv", "report"),
])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_run_file_that_is_not_a_regular_file_is_refused(tmp_path, run_dir, name, command, kind):
    run = _copy_run(run_dir, tmp_path / "run")
    (run / name).unlink()
    if kind == "fifo":
        os.mkfifo(run / name)
    else:
        os.symlink(kind, run / name)
    args = {"sample": ("-n", "2"), "score": ("emma",), "plot": ("--out", str(tmp_path / "plots")),
            "evaluate": (), "report": ()}[command]
    line = _one_line_error(run_cli(command, str(run), *args, timeout=120))  # a FIFO must not block it
    what = "a FIFO" if kind == "fifo" else "a character device"
    assert line == (f"keras-makemore: error: {run / name} is {what}, not a regular file: restore the run's own "
                    "file, or retrain the run")


def test_a_run_file_over_its_bound_is_refused_unread(tmp_path, run_dir):
    run = _copy_run(run_dir, tmp_path / "run")
    with open(run / "vocab.json", "r+b") as f:
        f.truncate(300 << 20)  # sparse: 300 MB that take no disk
    line = _one_line_error(run_cli("sample", str(run), "-n", "2"))
    assert line == (f"keras-makemore: error: {run / 'vocab.json'} holds 314,572,800 bytes, more than the "
                    "268,435,456 a run's vocab.json can hold: restore the run's own file, or retrain the run")


def _interrupted_run(words_path: Path, run: Path, model: str = "gru", **settings) -> Path:
    """A real run of `model` stopped by Ctrl-C right after its first checkpoint (20 of 40 steps)."""
    import keras

    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import train

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    config = TrainConfig.from_preset(model, **{"data": str(words_path), "steps": 40, "eval_every": 20,
                                               "hidden_units": 8, "embed_dim": 4, "batch_size": 8} | settings)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, callbacks=[CtrlC()], verbose=0)
    assert (run / "backup" / "epoch-000001.weights.h5").exists()
    return run


def _tree_digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_resume_refuses_a_config_naming_another_network_and_touches_nothing(tmp_path, words_path):
    run = _interrupted_run(words_path, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"model": "transformer"}))
    before = _tree_digests(run)
    line = _one_line_error(run_cli("train", "--resume", str(run), "--quiet", "--samples", "0"))
    assert line == (f"keras-makemore: error: --resume {run}: its config.json describes a transformer network whose "
                    "weights do not fit those in backup/epoch-000001.weights.h5: config.json changed since the run "
                    "started; restore it, or train a new run")
    assert _tree_digests(run) == before
    # Without its checkpoint, model.keras is what the network is checked against.
    shutil.rmtree(run / "backup")
    line = _one_line_error(run_cli("train", "--resume", str(run), "--quiet", "--samples", "0"))
    assert "weights do not fit those in model.keras" in line
    assert _tree_digests(run) == {k: v for k, v in before.items() if not k.startswith("backup")}


def _shuffled(text: str) -> str:
    import random

    lines = text.splitlines()
    random.Random(0).shuffle(lines)
    return "\n".join(lines) + "\n"


DATA_CHANGES = {
    "shuffled": _shuffled,
    "truncated": lambda text: text[:len(text) // 2],
    "edited in place": lambda text: text[:5000] + ("x" if text[5000] != "x" else "y") + text[5001:],
    "upper-cased": str.upper,
}


# The second read is the validation split's, read once before training; the sixth a training chunk, read by
# tf.data's generator (where an exception reaches the caller as a TensorFlow error).
@pytest.mark.parametrize("change, at", [(change, 2) for change in DATA_CHANGES] + [("upper-cased", 6)])
def test_a_data_file_changed_while_training_streams_it_stops_the_run_resumably(
        tmp_path, names_path, monkeypatch, capsys, change, at):
    from keras_makemore import cli
    from keras_makemore.data import streaming
    from keras_makemore.data.reading import read_words

    data = tmp_path / "words.txt"
    original = "\n".join(read_words(names_path)[:2000]) + "\n"
    data.write_text(original, encoding="utf-8")
    monkeypatch.setattr(streaming, "stream_threshold_bytes", lambda: 1000)
    monkeypatch.setattr(streaming, "STREAM_CHUNK_BYTES", 3000)  # several chunks, read in turn while training

    reads = []
    read = streaming.StreamedCorpus._read

    def read_then_change(corpus, chunk):  # the file changes between two reads of it while training runs
        reads.append(chunk)
        if len(reads) == at:
            data.write_text(DATA_CHANGES[change](original), encoding="utf-8")
        return read(corpus, chunk)

    monkeypatch.setattr(streaming.StreamedCorpus, "_read", read_then_change)
    run = tmp_path / "run"
    flags = ["--steps", "90", "--eval-every", "30", "--batch-size", "64", "--hidden", "8", "--embed-dim", "2",
             "--quiet", "--samples", "0"]
    assert cli.main(["train", "--data", str(data), "--out", str(run), *flags]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"keras-makemore: error: --data file {data} changed while it was "
                                                   "read ("), err
    assert lines[0].endswith(f"): training stopped, and what it saved is intact; put the original file back, then "
                             f"continue with `keras-makemore train --resume {run}`")
    assert not (run / "history.json").exists() and (run / "config.json").exists()

    monkeypatch.setattr(streaming.StreamedCorpus, "_read", read)
    data.write_text(original, encoding="utf-8")  # restored: the run goes on
    assert cli.main(["train", "--resume", str(run), "--quiet", "--samples", "0"]) == 0, capsys.readouterr().err
    assert len(json.loads((run / "history.json").read_text())["val_loss"]) == 3
# Resume, pipes and divergence

def _unfinished_copy(trained_run, tmp_path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run)
    (run / "history.json").unlink()
    return run


def test_resume_hashes_the_data_before_reading_it(trained_run, tmp_path, monkeypatch):
    """A changed data file is found by its sha256, read in blocks, before any word is read into memory."""
    from keras_makemore.data import corpus, reading, streaming
    from keras_makemore.errors import UserError
    from keras_makemore.training import recipe

    run = _unfinished_copy(trained_run, tmp_path)
    info = json.loads((run / "config.json").read_text())
    info["data_sha256"] = "0" * 64  # as if the file had changed since the run started
    (run / "config.json").write_text(json.dumps(info))

    def never(*args, **kwargs):
        raise AssertionError("the data file was read before its hash was compared")

    for module, name in ((recipe, "open_corpus"), (streaming, "open_corpus"), (reading, "read_words"),
                         (corpus.Corpus, "from_file")):
        monkeypatch.setattr(module, name, never)
    with pytest.raises(UserError, match="changed since the run started"):
        recipe.train(None, run, verbose=0, resume=True)


def test_a_finite_but_huge_loss_is_divergence(tmp_path, words_path):
    """lr 1e6 ends with a val loss of millions of nats, not NaN: as a NaN does, it ends in one line, exit 2."""
    out = tmp_path / "run"
    line = _one_line_error(run_cli("train", "--data", str(words_path), "--out", str(out), "--lr", "1e6",
                                   "--steps", "20", "--eval-every", "10", "--quiet", "--samples", "0"))
    assert line.startswith("keras-makemore: error: --lr 1000000.0 made training diverge: the training loss ended at ")
    assert line.endswith("of guessing uniformly among 27 tokens; lower it and train a new run")
    assert not (out / "history.json").exists()  # not a finished run


def test_a_slow_start_or_overfitting_is_not_divergence(tmp_path, words_path):
    """A learning rate too low to learn anything in 20 steps ends near the uniform guess, and an overfitted small
    corpus ends with a val loss far above it but a low training loss: neither is divergence."""
    from keras_makemore.errors import UserError
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import check_converged, train

    check_converged(TrainConfig(), {"loss": [2.0, 0.9], "val_loss": [3.0, 6.97]}, 27)  # overfitting
    with pytest.raises(UserError, match="the training loss ended at 7.1e\+06 and the val loss at 3.262e\+06, "
                                        "over twice the 3.30 of guessing uniformly among 27 tokens"):
        check_converged(TrainConfig(), {"loss": [1.6e7, 7.1e6], "val_loss": [1.3e7, 3.262e6]}, 27)

    for model in ("mlp", "transformer"):
        config = TrainConfig.from_preset(model if model != "mlp" else "lecture", data=str(words_path), lr=1e-6,
                                         steps=20, eval_every=10)
        result = train(config, tmp_path / model, verbose=0, num_samples=0)
        assert (tmp_path / model / "history.json").exists() and result.history["val_loss"][-1] > 3.0


def _peak_rss_of(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run the CLI in a fresh process; its result and its peak resident memory in bytes."""
    import sys

    probe = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "sys.stderr.write(done.stderr); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, done.returncode)")
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "keras_makemore", *args],
                            capture_output=True, text=True, timeout=900)
    peak, code = map(int, result.stdout.split())
    return subprocess.CompletedProcess(args, code, "", result.stderr), peak


def test_seventy_thousand_characters_train_in_bounded_memory(tmp_path):
    """70,000 distinct CJK characters: the passes over a split held 16,384 examples' logits (4.6 GB; 7.0 GB at
    peak with 63,712 characters); batched by the vocabulary, the run peaks under 2 GB."""
    chars = [chr(c) for c in [*range(0x3400, 0x4DC0), *range(0x4E00, 0xA000), *range(0x20000, 0x2A6E0)]][:70_000]
    data = tmp_path / "cjk.txt"
    data.write_text("".join("".join(chars[i:i + 10]) + "\n" for i in range(0, len(chars), 10)), encoding="utf-8")
    result, peak = _peak_rss_of("train", "--data", str(data), "--out", str(tmp_path / "run"), "--hidden", "8",
                                "--embed-dim", "4", *TINY[:4], "--quiet", "--samples", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert peak < 2 * 2**30, peak


def test_train_into_a_reader_that_goes_away_finishes_the_run(tmp_path, words_path):
    """`train ... | head -2`: the output is dropped once head exits, and the run trains to its end."""
    import sys

    out = tmp_path / "run"
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    train = subprocess.Popen([sys.executable, "-m", "keras_makemore", "train", "--data", str(words_path), "--out",
                              str(out), "--steps", "400", "--eval-every", "50", "--hidden", "8", "--embed-dim", "2",
                              "--samples", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    head = subprocess.run(["head", "-2"], stdin=train.stdout, capture_output=True, text=True, timeout=300)
    train.stdout.close()
    stderr = train.stderr.read().decode()
    assert train.wait(timeout=300) == 0, stderr[-2000:]
    assert len(head.stdout.splitlines()) == 2 and "Traceback" not in stderr
    history = json.loads((out / "history.json").read_text())  # the run finished
    assert len(history["val_loss"]) == 8 and not (out / "backup").exists()
