"""The web page (export/web) in real headless Chromium, on the model.tflite that `keras-makemore export` writes.

The page runs the file with LiteRT.js (wasm) and must show, for a seed and options, exactly the words
export/sample_tflite.py prints with ai-edge-litert. Without node, chromium or `npm ci` in export/web these
tests skip, except where KERAS_MAKEMORE_REQUIRE_WEB=1 (as .ci/run sets it), which makes that a failure.
"""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import SAMPLER, run_cli, web_page

pytestmark = pytest.mark.slow  # exports a model and drives Chromium

@pytest.fixture(scope="module")
def model_tflite(tmp_path_factory, trained_run):
    """The model.tflite that `keras-makemore export` writes for the shared small run."""
    run_dir = tmp_path_factory.mktemp("web") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    result = run_cli("export", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["litert"]


@pytest.fixture(scope="module")
def page(chromium, model_tflite):
    """`page(*args, **query)`: what the page shows at /?model=model.tflite&QUERY, served from 127.0.0.1 by serve.py."""
    with web_page(chromium, model_tflite) as show:
        yield show


def _sample_tflite(model: str, *args: str) -> list[str]:
    result = subprocess.run([sys.executable, str(SAMPLER), model, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("seed, n", [(9, 12), (3, 130)])  # 130 words take two generate_fixed calls
def test_page_shows_the_words_sample_tflite_prints(page, model_tflite, seed, n):
    shown = page(model="model.tflite", seed=seed, n=n)
    assert shown["error"] is None and shown["pageErrors"] == []
    assert shown["words"] == _sample_tflite(model_tflite, "--seed", str(seed), "-n", str(n))
    assert shown["firstWordsMs"] > 0 and shown["wordsPerSecond"] > 0


def test_page_options_give_the_words_sample_tflite_prints(page, model_tflite):
    shown = page(model="model.tflite", seed=4, n=30, temperature=0.8, top_k=5, top_p=0.9, prefix="a")
    assert shown["error"] is None
    assert shown["words"] == _sample_tflite(model_tflite, "--seed", "4", "-n", "30", "--temperature", "0.8",
                                            "--top-k", "5", "--top-p", "0.9", "--prefix", "a")
    assert all(word.startswith("a") for word in shown["words"])


def test_page_loads_nothing_from_another_origin(page):
    shown = page(model="model.tflite", n=1)
    assert shown["words"] and all(f["url"].startswith("http://127.0.0.1:") for f in shown["fetched"])


def _tflite_without_the_fixed_signatures(path):
    import tensorflow as tf

    double = tf.function(lambda x: {"y": 2 * x}, input_signature=[tf.TensorSpec([2], tf.float32, name="x")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    path.write_bytes(converter.convert())


@pytest.mark.parametrize("content, message", [
    (b"not a model at all", "bad.tflite is not a LiteRT model"),
    (_tflite_without_the_fixed_signatures, "bad.tflite has no generate_fixed or decode_fixed signature"),
], ids=["not-a-model", "without-the-signatures"])
def test_a_bad_file_shows_a_readable_error(page, tmp_path, content, message):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content) if isinstance(content, bytes) else content(bad)
    shown = page("--upload", str(bad))
    assert shown["state"] == "error" and message in shown["error"] and shown["words"] == []


def test_a_model_url_that_is_not_there_shows_a_readable_error(page):
    shown = page(model="missing.tflite")
    assert shown["state"] == "error" and shown["error"] == "Cannot fetch missing.tflite: 404 File not found"


def test_bad_options_show_a_readable_error(page):
    shown = page(model="model.tflite", temperature=0, prefix="a")
    assert shown["state"] == "error" and shown["error"] == 'Temperature must be at least 1e-6, got "0": try 1'


@pytest.fixture(scope="module")
def transformer_tflite(tmp_path_factory, names_path):
    """The model.tflite of the transformer preset's recipe, trained briefly on names at a small size."""
    run_dir = tmp_path_factory.mktemp("web") / "transformer"
    trained = run_cli("train", "--model", "transformer", "--data", str(names_path), "--embed-dim", "16",
                      "--hidden", "32", "--layers", "2", "--heads", "2", "--steps", "150", "--eval-every", "150",
                      "--out", str(run_dir))
    assert trained.returncode == 0, trained.stderr
    result = run_cli("export", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["litert"]


@pytest.fixture(scope="module")
def transformer_page(chromium, transformer_tflite):
    """`transformer_page(*args, **query)`: as `page`, serving the transformer's model.tflite."""
    with web_page(chromium, transformer_tflite) as show:
        yield show


def test_page_samples_the_transformers_words_with_the_time_shown(transformer_page, transformer_tflite):
    shown = transformer_page(model="model.tflite", seed=9, n=12)
    assert shown["error"] is None and shown["pageErrors"] == []
    assert shown["words"] == _sample_tflite(transformer_tflite, "--seed", "9", "-n", "12")
    assert shown["stats"].startswith("12 words in ") and " ms " in shown["stats"] and shown["wordsPerSecond"] > 0


def test_decode_step_in_the_browser_gives_the_logits_of_ai_edge_litert(transformer_page, transformer_tflite):
    """`WordModel.stepLogits` (initial_state, then decode_step a character at a time) in LiteRT.js."""
    import numpy as np

    from keras_makemore.artifacts.reader import ExportedModel

    word = "emily"
    script = ("const {WordModel} = await import('./makemore.js');"
              "const bytes = new Uint8Array(await (await fetch('model.tflite')).arrayBuffer());"
              f"const model = await WordModel.load(bytes); const logits = await model.stepLogits('{word}');"
              "model.delete(); return logits.map(row => Array.from(row));")
    shown = transformer_page("--evaluate", script, model="model.tflite", n=1)
    assert shown["pageErrors"] == []
    exported = ExportedModel(transformer_tflite)
    tokens = [0, *exported.vocab.encode(word)]
    state, expected = exported.initial_state(1), []
    for position, token in enumerate(tokens):
        logits, state = exported.decode_step(np.array([token], np.int32), position, state)
        expected.append(logits[0])
    np.testing.assert_allclose(np.array(shown["evaluated"]), np.array(expected), atol=1e-4)
    contexts = np.array([([0] * exported.block_size + tokens[:i + 1])[-exported.block_size:]
                         for i in range(len(tokens))], np.int32)  # the whole-window pass, as the page's next_token
    np.testing.assert_allclose(np.array(expected), exported(contexts), atol=1e-4)
