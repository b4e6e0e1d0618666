"""Faults of `tune` and its search directory: each is one line on stderr, exit 2, no traceback, nothing saved lost."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

from keras_makemore.training import rundir

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


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, words_path):
    out = tmp_path_factory.mktemp("tune") / "search"
    result = run_cli(*_tiny(words_path), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _plant_code(trial: dict, marker: Path) -> None:
    trial["hyperparameters"]["space"][0] = {"module": "os", "class_name": "system", "registered_name": None,
                                            "config": {"command": f"touch {marker}"}}


DAMAGES = {
    "tune.json not JSON": ("tune.json", lambda p, m: p.write_text("{not json"), "not UTF-8 JSON"),
    "tune.json a list": ("tune.json", lambda p, m: p.write_text("[1, 2]"), "a JSON object is expected, got list"),
    "seconds_used text": ("tune.json", lambda p, m: _edit_json(p, lambda s: s.update(seconds_used="ten")),
                          "seconds_used must be a number of seconds, got 'ten'"),
    "a trial a number": ("tune.json", lambda p, m: _edit_json(p, lambda s: s["trials"].update({"0": 5})),
                         "trial '0' must be a JSON object, got 5"),
    "oracle.json not JSON": ("search/oracle.json", lambda p, m: p.write_text("oracle"), "not UTF-8 JSON"),
    "oracle.json empty": ("search/oracle.json", lambda p, m: p.write_text("{}"),
                          "KerasTuner cannot read it back: KeyError"),
    "trial.json not JSON": ("search/trial_0/trial.json", lambda p, m: p.write_text("\x00\x01"), "not UTF-8 JSON"),
    "trial.json naming os.system": ("search/trial_0/trial.json", lambda p, m: _edit_json(p, lambda t: _plant_code(t, m)),
                                    "it names class 'os.system', which is no hyperparameter"),
    "trial.json without values": ("search/trial_0/trial.json",
                                  lambda p, m: _edit_json(p, lambda t: t["hyperparameters"].update(values={})),
                                  "its values are not a trial of this search: KeyError"),
    "tuner0.json not JSON": ("search/tuner0.json", lambda p, m: p.write_text("tuner"), "not UTF-8 JSON"),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_search_file_is_named_and_nothing_planted_runs(tmp_path, finished_search, words_path, damage):
    name, spoil, problem = DAMAGES[damage]
    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    marker = tmp_path / "pwned"
    spoil(out / name, marker)
    before = _digests(out)
    line = _one_line_error(run_cli(*_tiny(words_path), "--out", str(out)))
    assert line.startswith(f"keras-makemore: error: {out / name} of the search in {out} is damaged ({problem}")
    assert line.endswith(f"): delete {out} to search again from the start, or choose another --out")
    assert not marker.exists()
    after = _digests(out)
    assert {k: v for k, v in after.items() if k != "tune.json"} == {k: v for k, v in before.items() if k != "tune.json"}


@pytest.mark.slow
def test_every_row_size_is_checked_before_any_trial_trains(tmp_path, words_path):
    out = tmp_path / "search"
    flags = _tiny(words_path)
    flags[flags.index("--hidden") + 1:flags.index("--hidden") + 3] = ["50", "1000000000"]
    line = _one_line_error(run_cli(*flags, "--out", str(out)))
    assert line == ("keras-makemore: error: model mlp cannot train every combination searched: --hidden-units "
                    "1000000000 with embed_dim 2 and block_size 3 would make 34,000,000,081 parameters for model mlp "
                    "(126.7 GiB of float32 weights), over the limit of 200,000,000: make them smaller")
    assert not out.exists()  # nothing trained, nothing written


def test_search_sizes_are_checked_for_every_combination(words_path):
    from keras_makemore.errors import UserError
    from keras_makemore.search.space import TuneConfig
    from keras_makemore.search.tune import tune
    from keras_makemore.training.config import TrainConfig

    base = TrainConfig(data=str(words_path), seed=3)
    with pytest.raises(UserError, match="model wavenet cannot train every combination searched: .* would make"):
        tune(TuneConfig(model="wavenet", tuner="grid"), base, "/nonexistent/never-written",
             fixed={"hidden_units": (8, 10**6), "embed_dim": (2, 10**4)})


@pytest.mark.slow
def test_a_trial_whose_model_was_deleted_is_trained_again_for_best(tmp_path, finished_search, words_path):
    import numpy as np

    from keras_makemore.training.run import load_model

    out = tmp_path / "search"
    shutil.copytree(finished_search, out)
    for model in [*out.glob("search/trial_*/run/model.keras"), out / "best" / "model.keras"]:
        model.unlink()
    result = run_cli(*_tiny(words_path), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    trial = next(line for line in result.stdout.splitlines() if "is missing" in line)
    assert trial.startswith("[trial ") and f"its model.keras is missing from {out / 'search'}" in trial
    assert "training it again, 40 steps" in trial
    assert (out / "best" / "history.csv").read_text() == (finished_search / "best" / "history.csv").read_text()
    again, before = load_model(out / "best" / "model.keras"), load_model(finished_search / "best" / "model.keras")
    for a, b in zip(again.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # minibatches are a function of (seed, step)
