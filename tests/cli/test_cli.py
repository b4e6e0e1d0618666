"""The CLI end to end, in subprocesses, on a tiny file."""

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow  # every test runs the CLI in a subprocess


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, words_path):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("train", "--data", str(words_path), "--out", str(run_dir), "--steps", "400",
                     "--eval-every", "200", "--hidden", "24", "--embed-dim", "4", "--batch-size", "16",
                     "--optimizer", "adam", "--lr", "0.01", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_train_prints_progress_samples_and_where_it_saved(cli_run):
    run_dir, result = cli_run
    assert "Epoch 2/2" in result.stdout
    assert "val_loss" in result.stdout
    assert "samples:" in result.stdout
    assert f"run saved in {run_dir}" in result.stdout
    assert result.stderr.strip() == "" or "Warning" not in result.stderr
    assert (run_dir / "model.keras").exists()


def test_evaluate_json(cli_run):
    run_dir, _ = cli_run
    result = run_cli("evaluate", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report["losses"]) == {"train", "val", "test"}
    for loss in report["losses"].values():
        assert 0 < loss["nll"] < 4 and loss["perplexity"] > 1 and loss["bits_per_char"] > 0
    assert report["verdict"].split(":")[0] in {"underfitting", "balanced", "overfitting"}


def test_evaluate_table(cli_run):
    result = run_cli("evaluate", str(cli_run[0]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["split", "examples", "loss", "perplexity", "bits/char"]
    assert [l.split()[0] for l in lines[1:4]] == ["train", "val", "test"]


def test_sample_json_is_seeded(cli_run):
    run_dir, _ = cli_run
    args = ("sample", str(run_dir), "-n", "8", "--seed", "11", "--temperature", "0.8",
            "--top-k", "5", "--prefix", "a", "--json")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out == json.loads(second.stdout)
    assert len(out["samples"]) == 8 and all(w.startswith("a") for w in out["samples"])
    assert 0.0 <= out["novelty"] <= 1.0


def test_user_errors_are_one_line_with_exit_code_2(cli_run, tmp_path):
    run_dir, _ = cli_run
    cases = [
        ("sample", str(run_dir), "--prefix", "Ω"),
        ("sample", str(tmp_path / "no-such-run")),
        ("train", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("keras-makemore: error: ")
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [None, "train", "evaluate", "sample"])
def test_help(command):
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "usage: keras-makemore" in result.stdout


def test_bare_train_uses_the_packaged_dataset_offline_with_an_empty_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    result = run_cli("train", "--steps", "200", "--eval-every", "100", "--samples", "0",
                     cwd=tmp_path, env={"HOME": str(home), "KERAS_HOME": str(home / ".keras")})
    assert result.returncode == 0, result.stderr
    run_dirs = list((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 1
    config = json.loads((run_dirs[0] / "config.json").read_text())
    assert config["data"].endswith("names.txt") and config["vocab_size"] == 27
    assert not (home / ".keras" / "datasets").exists()  # nothing downloaded
    assert "182,625 examples" in result.stdout
