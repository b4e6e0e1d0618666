"""Faults around export, sampling and scoring: one clear line on stderr, exit 2, nothing saved lost."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import run_cli
from keras_makemore.errors import UserError
from keras_makemore.export import export_run
from keras_makemore.exported import ExportedModel

pytestmark = pytest.mark.slow  # exports and runs the CLI in subprocesses


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, trained_run):
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    export_run(run_dir, check=False)
    return run_dir


def _one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _tree_digest(path) -> dict:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_saved_model_without_variables_is_refused(exported_run, tmp_path):
    export_dir = tmp_path / "export"
    shutil.copytree(exported_run / "export", export_dir)
    shutil.rmtree(export_dir / "saved_model" / "variables")
    _one_line_error(run_cli("sample", str(export_dir / "saved_model")), "variables/variables.index is missing",
                    "export the run again")
    line = _one_line_error(run_cli("sample", str(export_dir / "saved_model"), "--trust-saved-model"),
                           "not a loadable SavedModel")
    assert "export the run again" in line


def test_garbage_saved_model_pb_is_refused(exported_run, tmp_path):
    export_dir = tmp_path / "export"
    shutil.copytree(exported_run / "export", export_dir)
    (export_dir / "saved_model" / "saved_model.pb").write_bytes(b"\x08garbage\xff" * 50)
    _one_line_error(run_cli("sample", str(export_dir / "saved_model")), "saved_model.pb changed")
    _one_line_error(run_cli("score", str(export_dir / "saved_model"), "emma", "--trust-saved-model"),
                    "not a loadable SavedModel")
    alone = tmp_path / "alone"
    shutil.copytree(export_dir / "saved_model", alone)
    _one_line_error(run_cli("sample", str(alone)), "no export.json", "trust")


class _Crafted(tf.Module):
    """A SavedModel with the export signatures whose `decode` writes a file: what a hostile download could do."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="tokens")])
    def decode(self, tokens):
        tf.io.write_file(self.marker, "pwned")
        return {"code_points": tokens, "vocabulary": tf.constant([0, 97], tf.int32),
                "block_size": tf.constant(3), "max_length": tf.constant(8)}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32, name="context")])
    def next_token(self, context):
        logits = tf.zeros([tf.shape(context)[0], 2])
        return {"logits": logits, "probabilities": logits}


def test_a_foreign_saved_model_never_runs_without_the_flag(tmp_path):
    marker = tmp_path / "written_by_the_saved_model"
    module = _Crafted(str(marker))
    crafted = tmp_path / "export" / "saved_model"
    tf.saved_model.save(module, str(crafted), signatures={
        "decode": module.decode, "next_token": module.next_token, "generate": module.next_token,
        "score": module.next_token})
    # A manifest of another SavedModel's files does not make it trusted either.
    (tmp_path / "export" / "export.json").write_text(json.dumps(
        {"saved_model": "saved_model", "saved_model_sha256": {"saved_model.pb": "0" * 64}}))
    for command in (("sample", str(crafted)), ("score", str(crafted), "a")):
        _one_line_error(run_cli(*command), "trust")
        assert not marker.exists()
    with pytest.raises(UserError, match="trust_saved_model") as e:
        ExportedModel(crafted)
    assert e.value.argument == "trust_saved_model" and not marker.exists()
    run_cli("sample", str(crafted), "--trust-saved-model")
    assert marker.read_text() == "pwned"  # the flag does open it: the test's SavedModel really would have run


def test_export_refuses_a_plain_file_where_the_export_folder_goes(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    (run_dir / "export").write_text("my notes")
    _one_line_error(run_cli("export", str(run_dir)), "is a file", "move it away")
    assert (run_dir / "export").read_text() == "my notes"


def test_two_exports_of_one_run_at_once_both_succeed(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-m", "keras_makemore", "export", str(run_dir), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for extra in ((), ("--quantize", "dynamic"))]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
    names = sorted(p.name for p in (run_dir / "export").iterdir())
    assert names == ["export.json", "model.tflite", "model_dynamic.tflite", "saved_model"], names
    manifest = json.loads((run_dir / "export" / "export.json").read_text())
    assert set(manifest["litert"]) == {"model.tflite", "model_dynamic.tflite"}
    words = ExportedModel(run_dir / "export" / "saved_model").generate(seed=3, num_words=5)
    assert words == ExportedModel(run_dir / "export" / "model.tflite").generate(seed=3, num_words=5)


@pytest.mark.parametrize("flags, needle", [  # the Python checks behind them: tests/test_sampling.py
    (("--seed", str(2**31)), "seed"), (("--temperature", "inf"), "temperature"),
    (("--temperature", "nan"), "temperature"), (("--top-p", "1.5"), "top"),
    (("--max-length", "999"), "max"), (("--json", "-n", "100000000"), "json"),
])
def test_nonsense_sampling_values_are_refused(exported_run, flags, needle):
    _one_line_error(run_cli("sample", str(exported_run / "export" / "model.tflite"), *flags), needle)


def test_negative_seeds_are_seeds(exported_run):
    model = str(exported_run / "export" / "model.tflite")
    first, again, other = (run_cli("sample", model, "--seed", seed, "-n", "5") for seed in ("-1", "-1", "1"))
    assert first.returncode == 0 and first.stdout == again.stdout != other.stdout


def test_a_hundred_million_words_stream(exported_run):
    """`-n 100000000` prints words as they come instead of holding them all."""
    proc = subprocess.Popen([sys.executable, "-m", "keras_makemore", "sample", str(exported_run / "export" / "model.tflite"),
                             "-n", "100000000", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        lines = [proc.stdout.readline() for _ in range(25_000)]
    finally:
        proc.kill()
        proc.wait()
    assert all(line.endswith("\n") for line in lines)
    first = run_cli("sample", str(exported_run / "export" / "model.tflite"), "-n", "25000", "--seed", "1")
    assert "".join(lines) == first.stdout


def test_data_file_errors_name_the_line_not_the_content(exported_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("emma\nsecret-Ω-line\n", encoding="utf-8")
    line = _one_line_error(run_cli("score", str(exported_run), "--file", str(words)), "line 2", str(words))
    assert "secret" not in line
    binary = tmp_path / "banned.bin"
    binary.write_bytes(b"secret\x00\xff")
    line = _one_line_error(run_cli("sample", str(exported_run), "--exclude", str(binary)), str(binary))
    assert "secret" not in line


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(not _is_root() or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_export_on_a_full_disk_is_one_line_and_keeps_the_earlier_export(trained_run, exported_run, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    run_bytes = sum(p.stat().st_size for p in trained_run.run_dir.rglob("*") if p.is_file())
    export_bytes = sum(p.stat().st_size for p in (exported_run / "export").rglob("*") if p.is_file())
    size_kb = (run_bytes + export_bytes * 3 // 2) // 1024  # room for one export, not two
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True)
    try:
        run_dir = mount / "run"
        shutil.copytree(trained_run.run_dir, run_dir)
        assert run_cli("export", str(run_dir), "--no-check").returncode == 0
        before = _tree_digest(run_dir)
        _one_line_error(run_cli("export", str(run_dir), "--quantize", "dynamic"), "no space left", "free some space")
        assert _tree_digest(run_dir) == before  # the run and the earlier export are intact, no partial files
        assert ExportedModel(run_dir / "export" / "saved_model").generate(seed=1, num_words=3)
        shutil.rmtree(run_dir / "export")
        (mount / "filler").write_bytes(b"\0" * (size_kb * 1024 - run_bytes - 60_000))
        _one_line_error(run_cli("export", str(run_dir), "--no-check"), "no space left")
        assert not (run_dir / "export").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
