"""Run directories and exports written by 0.1.0 (before the modules moved into packages) still load, sample the
same words, resume to the same weights and export again: tests/fixtures/legacy_runs (its README says how they
were made)."""

import json
import shutil

import numpy as np
import pytest
from conftest import FIXTURES, run_cli

LEGACY = FIXTURES / "legacy_runs"


def _copy(name: str, tmp_path):
    """A copy of a legacy run whose config points at the fixture words where they are in this checkout."""
    run = tmp_path / name
    shutil.copytree(LEGACY / name, run)
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["data"] = str(FIXTURES / "words.txt")
    (run / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return run


@pytest.mark.parametrize("name", ["mlp", "rnn"])
def test_a_legacy_run_loads_and_samples_the_words_it_sampled(name, tmp_path):
    from keras_makemore import Run, sample_words

    run = Run.load(_copy(name, tmp_path))
    expected = json.loads((LEGACY / "expected-samples.json").read_text(encoding="utf-8"))[name]
    assert sample_words(run.model, run.vocab, run.config.block_size, 8, seed=5) == expected


def test_a_legacy_export_samples_the_words_of_its_run(tmp_path):
    from keras_makemore import sample_words
    from keras_makemore.artifacts.reader import open_model

    run = _copy("mlp", tmp_path)
    opened = open_model(run / "export" / "model.tflite")
    expected = json.loads((LEGACY / "expected-samples.json").read_text(encoding="utf-8"))["mlp"]
    assert sample_words(opened.model, opened.vocab, opened.block_size, 8, seed=5) == expected


@pytest.mark.slow  # trains, and exports in a subprocess
def test_a_legacy_interrupted_run_resumes_to_the_weights_of_the_uninterrupted_one(tmp_path):
    import keras

    run = _copy("mlp-interrupted", tmp_path)
    result = run_cli("train", "--resume", str(run), "--quiet")
    assert result.returncode == 0, result.stderr
    resumed = keras.saving.load_model(run / "model.keras").get_weights()
    whole = keras.saving.load_model(LEGACY / "mlp" / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(resumed, whole))
    exported = run_cli("export", str(run))
    assert exported.returncode == 0, exported.stderr
    assert (run / "export" / "model.tflite").stat().st_size > 0
