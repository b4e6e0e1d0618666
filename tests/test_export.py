"""Export to SavedModel and LiteRT: the real converter, the real `ai_edge_litert` interpreter."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_cli
from keras_makemore.errors import UserError
from keras_makemore.export import SIGNATURES, check_against_keras, convert_to_litert, export_run
from keras_makemore.exported import ExportedModel
from keras_makemore.generation import seeded_uniforms, seeded_uniforms_tf
from keras_makemore.runs import Run
from keras_makemore.sampling import sample_words

SAMPLER = ROOT / "export" / "sample_tflite.py"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_run):
    """A copy of the shared run, exported as float32."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    report = export_run(run_dir)
    return Run.load(run_dir), report


def test_export_writes_both_artifacts_and_a_manifest(exported):
    run, report = exported
    export_dir = run.path / "export"
    assert (export_dir / "saved_model" / "saved_model.pb").is_file()
    assert report.litert == export_dir / "model.tflite" and report.litert_bytes > 10_000
    manifest = json.loads((export_dir / "export.json").read_text())
    assert manifest["signatures"] == list(SIGNATURES)
    assert manifest["litert"]["model.tflite"]["bytes"] == report.litert_bytes
    assert manifest["block_size"] == 3 and manifest["max_length"] == run.max_length


def test_litert_float32_matches_keras_on_every_val_and_train_context(exported):
    run, report = exported
    corpus = run.corpus()
    assert report.check.examples == len(corpus.examples("val")[0])
    assert report.check.max_abs_diff <= 1e-5
    assert round(report.check.exported_loss, 4) == round(report.check.keras_loss, 4)
    train_check = check_against_keras(run.model, ExportedModel(report.litert), *corpus.examples("train"))
    assert train_check.max_abs_diff <= 1e-5
    assert abs(train_check.exported_loss - train_check.keras_loss) < 1e-5


@pytest.mark.parametrize("artifact", ["litert", "saved_model"])
def test_signatures_carry_model_and_vocabulary(exported, artifact):
    run, report = exported
    model = ExportedModel(getattr(report, artifact))
    assert model.vocab == run.vocab and model.block_size == 3 and model.max_length == run.max_length
    x, _ = run.corpus().examples("val")
    out = model.next_token(x)
    assert out["logits"].shape == out["probabilities"].shape == (len(x), run.vocab.size)
    np.testing.assert_allclose(out["probabilities"].sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["logits"], np.asarray(run.model(x)), atol=1e-5)


def test_litert_calls_of_changing_shapes_and_signatures_match_a_fresh_runner(exported):
    """The reused allocation must never serve a call of another shape, or one after another signature."""
    from ai_edge_litert.interpreter import Interpreter

    run, report = exported
    x, _ = run.corpus().examples("val")
    model = ExportedModel(report.litert)
    for batch in (x[:1], x[1:2], x[:5], x[5:10], x[:1], x[7:8]):
        fresh = Interpreter(model_path=str(report.litert)).get_signature_runner("next_token")(context=batch)
        got = model.next_token(batch)
        assert got.keys() == fresh.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], fresh[name])
        assert model.generate(seed=len(batch), num_words=3) == model.generate(seed=len(batch), num_words=3)
    with pytest.raises((ValueError, RuntimeError)):
        model.next_token(np.zeros((1, 4), np.int32))  # a context of the wrong width still fails
    np.testing.assert_allclose(model.next_token(x[:1])["logits"], np.asarray(run.model(x[:1])), atol=1e-5)


def test_signature_lists_agree_between_litert_and_saved_model(exported):
    from ai_edge_litert.interpreter import Interpreter

    _, report = exported
    litert = Interpreter(model_path=str(report.litert)).get_signature_list()
    saved = tf.saved_model.load(str(report.saved_model)).signatures
    assert set(litert) == set(SIGNATURES)
    assert set(saved) == set(SIGNATURES) | {"serving_default"}  # ExportArchive's alias of next_token
    for name in SIGNATURES:
        fn = saved[name]
        assert set(litert[name]["inputs"]) == set(fn.structured_input_signature[1])
        assert set(litert[name]["outputs"]) == set(fn.structured_outputs)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_same_uniforms_same_words_in_keras_saved_model_and_litert(exported, temperature):
    run, report = exported
    length = run.max_length
    uniforms = np.random.default_rng(3).random((300, length), dtype=np.float32)
    keras_words = sample_words(run.model, run.vocab, 3, 300, uniforms=uniforms, temperature=temperature,
                               max_length=length)
    litert, saved = ExportedModel(report.litert), ExportedModel(report.saved_model)
    assert litert.generate_with_uniforms(uniforms, temperature) == keras_words
    assert saved.generate_with_uniforms(uniforms, temperature) == keras_words
    assert sample_words(litert, litert.vocab, 3, 300, uniforms=uniforms, temperature=temperature,
                        max_length=length) == keras_words  # numpy loop over next_token
    assert len(set(keras_words)) > 30 and all(set(w) <= set(run.vocab.chars) for w in keras_words)


def test_seed_gives_the_same_words_everywhere(exported):
    run, report = exported
    litert, saved = ExportedModel(report.litert), ExportedModel(report.saved_model)
    words = litert.generate(seed=11, num_words=200)
    assert saved.generate(seed=11, num_words=200) == words
    uniforms = seeded_uniforms(11, 200, run.max_length)
    assert sample_words(run.model, run.vocab, 3, 200, uniforms=uniforms, max_length=run.max_length) == words
    assert litert.generate(seed=11, num_words=1) == words[:1]  # one invoke, one word
    assert litert.generate(seed=12, num_words=200) != words
    assert litert.generate(seed=11, num_words=0) == []


@pytest.mark.parametrize("seed", [0, -7, 2**31 - 1])
def test_seeded_uniforms_are_bit_identical_in_numpy_and_tensorflow(seed):
    expected = seeded_uniforms(seed, 64, 40)
    got = seeded_uniforms_tf(tf.constant(seed), tf.constant(64), 40).numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected.dtype == np.float32 and 0 < expected.min() and expected.max() < 1
    assert abs(expected.mean() - 0.5) < 0.02 and len(np.unique(expected)) > 2500


def test_quantized_models_stay_close_to_keras(exported):
    run, report = exported
    corpus = run.corpus()
    x_val, y_val = corpus.examples("val")
    for quantize, prob_bound in (("float16", 1e-2), ("dynamic", 5e-2), ("int8", 1e-1)):
        path = convert_to_litert(report.saved_model, run.path / "export" / f"q_{quantize}.tflite", quantize,
                                 representative_contexts=corpus.examples("train")[0])
        check = check_against_keras(run.model, ExportedModel(path), x_val, y_val)
        assert check.max_abs_diff < prob_bound, (quantize, check)
        assert abs(check.exported_loss - check.keras_loss) < 0.02, (quantize, check)
        assert len(ExportedModel(path).generate(seed=1, num_words=20)) == 20
        if quantize != "dynamic":  # this model's weights are below the converter's dynamic-range threshold
            assert {"float16": np.float16, "int8": np.int8}[quantize] in _tensor_types(path)
    assert np.float16 not in _tensor_types(report.litert) and np.int8 not in _tensor_types(report.litert)


def _tensor_types(path) -> set:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return {t["dtype"] for i in range(interpreter.num_subgraphs())
            for t in interpreter.get_tensor_details(subgraph_index=i)}


def test_re_export_replaces_artifacts_without_leftovers(exported):
    run, report = exported
    again = export_run(run.path, "dynamic", check=False)
    assert again.check is None and again.litert.name == "model_dynamic.tflite"
    names = sorted(p.name for p in (run.path / "export").iterdir())
    assert not [n for n in names if n.startswith(".")], names
    manifest = json.loads((run.path / "export" / "export.json").read_text())
    assert {"model.tflite", "model_dynamic.tflite"} <= set(manifest["litert"])
    assert ExportedModel(report.saved_model).generate(seed=11, num_words=5) == \
        ExportedModel(report.litert).generate(seed=11, num_words=5)


def test_bad_artifacts_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a .tflite file or a SavedModel"):
        ExportedModel(tmp_path)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="not a valid LiteRT model"):
        ExportedModel(broken)


_BLOCK_TENSORFLOW = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "keras_makemore", "tf_keras"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules), "tensorflow was imported"
"""


def test_standalone_sampler_runs_without_tensorflow(exported, tmp_path):
    _, report = exported
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_TENSORFLOW, str(SAMPLER), str(report.litert), "-n", "25", "--seed", "4",
         "--temperature", "0.9"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()
    assert words == ExportedModel(report.litert).generate(seed=4, num_words=25, temperature=0.9)


def test_cli_export_and_sample_from_the_artifacts(exported):
    run, _ = exported
    result = run_cli("export", str(run.path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["quantize"] == "none" and report["val_check"]["max_abs_diff"] <= 1e-5
    args = ("-n", "12", "--seed", "5", "--temperature", "0.8", "--top-k", "6", "--prefix", "a", "--json")
    from_run = json.loads(run_cli("sample", str(run.path), *args).stdout)
    result = run_cli("sample", report["litert"], *args)  # the SavedModel path is the same code
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["samples"] == from_run["samples"] and out["novelty"] == from_run["novelty"]


def test_cli_error_is_one_line(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_text("hello")
    result = run_cli("sample", str(broken))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("keras-makemore: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
