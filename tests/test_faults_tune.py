"""Faults of `tune` and its search directory: each is one line on stderr, exit 2, no traceback, nothing saved lost."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from keras_makemore import rundir

pytest.importorskip("keras_tuner")


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr[-2000:]
    return lines[0]


def _tiny(words_path: Path) -> list[str]:
    """A grid search of two tiny MLPs, 40 steps each (about 25 s)."""
    return ["tune", "--data", str(words_path), "--tuner", "grid", "--max-trials", "2", "--block-size", "3",
            "--embed-dim", "2", "--hidden", "8", "16", "--batch-size", "16", "--steps", "40", "--evals", "2",
            "--budget", "5m"]


def _digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("where, problem", [("afile", "File exists"), ("afile/search", "Not a directory"),
                                            ("/proc/x", "No such file or directory")])
def test_tune_out_that_cannot_be_a_directory(tmp_path, words_path, where, problem):
    (tmp_path / "afile").write_text("kept")
    out = where if where.startswith("/") else str(tmp_path / where)
    line = _one_line_error(run_cli(*_tiny(words_path), "--out", out))
    assert line == f"keras-makemore: error: --out {out} cannot be written: {problem}; choose another --out"
    assert (tmp_path / "afile").read_text() == "kept"


@pytest.mark.slow
def test_sweep_out_under_a_file(tmp_path, words_path):
    (tmp_path / "afile").write_text("kept")
    line = _one_line_error(run_cli("sweep", "--data", str(words_path), "--out", str(tmp_path / "afile" / "s"),
                                   "--steps", "20"))
    assert line.endswith("cannot be written: Not a directory; choose another --out")


@pytest.mark.slow
def test_two_searches_into_one_directory_cannot_run_at_once(tmp_path, words_path):
    out = tmp_path / "search"
    out.mkdir()
    with rundir.run_lock(out, argument="out_dir", doing="searching"):  # another search, as far as tune can tell
        line = _one_line_error(run_cli(*_tiny(words_path), "--out", str(out)))
    assert line == (f"keras-makemore: error: --out {out} is busy: another process is searching it; wait for it to "
                    "end, or stop it first")
    assert not list(out.iterdir())
