"""Export to SavedModel and LiteRT: the real converter, the real `ai_edge_litert` interpreter."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_cli

from keras_makemore.artifacts.reader import ExportedModel, saved_model_digests
from keras_makemore.artifacts.signatures import FIXED_BATCH, SIGNATURES, signature_table
from keras_makemore.artifacts.writer import check_against_keras, convert_to_litert, export_run
from keras_makemore.errors import UserError
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.sampling.graph import seeded_uniforms, seeded_uniforms_fn
from keras_makemore.sampling.scoring import score_words
from keras_makemore.sampling.words import sample_words
from keras_makemore.training.run import Run

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
    assert manifest["saved_model_sha256"] == saved_model_digests(export_dir / "saved_model")
    assert {"saved_model.pb", "variables/variables.index"} <= set(manifest["saved_model_sha256"])
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


def test_the_devices_guide_lists_every_signature_and_control():
    guide = (ROOT / "export" / "README.md").read_text(encoding="utf-8")
    assert signature_table() in guide
    for spec in SamplingControls.tensor_specs(None):
        shape = "[L]" if spec.shape.rank else "[]"
        assert f"| `{spec.name}` | {spec.dtype.name} `{shape}` |" in guide, spec.name


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


def test_signatures_have_the_contracts_names_shapes_and_dtypes(exported):
    """The contract of notes/signatures.md, which the browser page is built against."""
    from ai_edge_litert.interpreter import Interpreter

    run, report = exported
    length, vocab_size, b = run.max_length, run.vocab.size, FIXED_BATCH
    interpreter = Interpreter(model_path=str(report.litert))
    scalars = {"seed": "int32", "first_row": "int32", "temperature": "float32", "top_k": "int32",
               "top_p": "float32", "min_length": "int32", "max_length": "int32"}
    controls = {name: ([], dtype) for name, dtype in scalars.items()} | {"prefix": ([length], "int32")}
    expected = {
        "next_token": ({"context": ([-1, 3], "int32")},
                       {"logits": ([-1, vocab_size], "float32"), "probabilities": ([-1, vocab_size], "float32")}),
        "generate": (controls | {"num_words": ([], "int32")}, {"tokens": ([-1, length], "int32")}),
        "score": ({"words": ([-1, length], "int32")}, {"log_prob": ([-1], "float32"), "nll": ([-1], "float32")}),
        "decode": ({"tokens": ([-1, -1], "int32")},
                   {"code_points": ([-1, -1], "int32"), "vocabulary": ([vocab_size], "int32"),
                    "block_size": ([], "int32"), "max_length": ([], "int32")}),
        "generate_fixed": (controls, {"tokens": ([b, length], "int32")}),
        "score_fixed": ({"words": ([b, length], "int32")}, {"log_prob": ([b], "float32"), "nll": ([b], "float32")}),
        "decode_fixed": ({"tokens": ([b, length], "int32")},
                         {"code_points": ([b, length], "int32"), "vocabulary": ([vocab_size], "int32"),
                          "block_size": ([], "int32"), "max_length": ([], "int32")}),
        # A window model's state is its window of token ids.
        "initial_state": ({"num_words": ([], "int32")}, {"state": ([-1, 3], "int32")}),
        "decode_step": ({"token": ([-1], "int32"), "position": ([], "int32"), "state": ([-1, 3], "int32")},
                        {"logits": ([-1, vocab_size], "float32"), "state": ([-1, 3], "int32")}),
        "decode_step_one": ({"token": ([1], "int32"), "position": ([], "int32"), "state": ([1, 3], "int32")},
                            {"logits": ([1, vocab_size], "float32"), "state": ([1, 3], "int32")}),
    }
    assert set(interpreter.get_signature_list()) == set(expected)

    def shapes(details):
        return {name: (d["shape_signature"].tolist(), d["dtype"].__name__) for name, d in details.items()}

    for name, (inputs, outputs) in expected.items():
        runner = interpreter.get_signature_runner(name)
        assert shapes(runner.get_input_details()) == inputs, name
        assert shapes(runner.get_output_details()) == outputs, name


_OPTIONS = [{}, {"temperature": 0.7}, {"top_k": 5}, {"top_p": 0.8}, {"prefix": "ma"},
            {"temperature": 1.3, "top_k": 8, "top_p": 0.9, "prefix": "a", "min_length": 3, "max_length": 7}]


@pytest.mark.parametrize("options", _OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_one_seed_gives_the_same_words_in_keras_saved_model_litert_and_the_standalone_sampler(exported, options):
    run, report = exported
    options_for_keras = {"max_length": run.max_length, **options}
    keras_words = sample_words(run.model, run.vocab, 3, 30, seed=11, **options_for_keras)
    litert, saved = ExportedModel(report.litert), ExportedModel(report.saved_model)
    assert litert.generate(seed=11, num_words=30, **options) == keras_words
    assert saved.generate(seed=11, num_words=30, **options) == keras_words
    assert sample_words(litert, litert.vocab, 3, 30, seed=11, **options) == keras_words
    standalone = _standalone_sampler()
    assert list(standalone.sample(str(report.litert), 30, 11, **_standalone_options(options))) == keras_words
    assert len(set(keras_words)) > 3 and all(w.startswith(options.get("prefix", "")) for w in keras_words)
    assert sample_words(run.model, run.vocab, 3, 30, seed=12, **options_for_keras) != keras_words


def _standalone_sampler():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sample_tflite", SAMPLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _standalone_options(options: dict) -> dict:
    return {"top_k": 0, "top_p": 1.0, **options}


@pytest.mark.parametrize("artifact", ["litert", "saved_model"])
def test_fixed_signatures_are_pages_of_the_dynamic_ones(exported, artifact):
    run, report = exported
    model = ExportedModel(getattr(report, artifact))
    signatures = model._signatures
    controls = {"temperature": np.float32(0.9), "top_k": np.int32(6), "top_p": np.float32(0.95),
                "prefix": np.zeros(run.max_length, np.int32), "min_length": np.int32(2), "max_length": np.int32(0)}
    whole = signatures["generate"](seed=np.int32(3), num_words=np.int32(250), first_row=np.int32(0),
                                   **controls)["tokens"]
    pages = [signatures["generate_fixed"](seed=np.int32(3), first_row=np.int32(first), **controls)["tokens"]
             for first in (0, 100, 200)]
    np.testing.assert_array_equal(np.concatenate(pages)[:250], whole)
    np.testing.assert_array_equal(signatures["generate"](seed=np.int32(3), num_words=np.int32(50),
                                                         first_row=np.int32(100), **controls)["tokens"], whole[100:150])
    fixed_scores = signatures["score_fixed"](words=pages[0])
    scores = signatures["score"](words=pages[0])
    np.testing.assert_allclose(fixed_scores["log_prob"], scores["log_prob"], atol=1e-5)
    np.testing.assert_allclose(fixed_scores["nll"], scores["nll"], atol=1e-6)
    decoded = signatures["decode_fixed"](tokens=pages[0])
    assert decoded["code_points"].shape == (FIXED_BATCH, run.max_length) and int(decoded["max_length"]) == run.max_length
    np.testing.assert_array_equal(decoded["code_points"], signatures["decode"](tokens=pages[0])["code_points"])


@pytest.mark.parametrize("artifact", ["litert", "saved_model"])
def test_exported_score_matches_keras(exported, artifact):
    run, report = exported
    model = ExportedModel(getattr(report, artifact))
    words = run.corpus().split.val + ["", "zzzz", "a" * run.max_length]
    keras_scores = score_words(run.model, run.vocab, words)
    exported_scores = score_words(model, model.vocab, words)
    for k, e in zip(keras_scores, exported_scores):
        assert k.word == e.word
        # nll to 1e-5; log_prob, a sum of up to L + 1 float32 terms, to 1e-5 a term
        assert abs(k.nll - e.nll) <= 1e-5 and abs(k.log_prob - e.log_prob) <= 1e-5 * (len(k.word) + 1), (k, e)
    with pytest.raises(UserError, match="^words"):
        model.score(["a" * (run.max_length + 1)])


@pytest.mark.parametrize("seed", [0, -7, 2**31 - 1, -2**31])
def test_seeded_uniforms_are_bit_identical_in_numpy_and_tensorflow(seed):
    expected = seeded_uniforms(seed, 64, 40, first_row=5)
    uniforms = seeded_uniforms_fn(tf.constant(seed), tf.constant(5), tf.constant(64))
    got = np.stack([uniforms(tf.range(64), tf.constant(t)).numpy() for t in range(40)], axis=1)
    np.testing.assert_array_equal(got, expected)
    assert expected.dtype == np.float32 and 0 < expected.min() and expected.max() < 1
    assert abs(expected.mean() - 0.5) < 0.02 and len(np.unique(expected)) > 2500


@pytest.mark.slow
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
        model = ExportedModel(path)
        assert len(model.generate(seed=1, num_words=20, top_p=0.9, top_k=5, prefix="a")) == 20
        assert model.score(["emma", "ava"])["nll"].shape == (2,)
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
    assert ExportedModel(report.litert).generate(seed=11, num_words=0) == []


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


@pytest.mark.slow
def test_standalone_sampler_runs_without_tensorflow(exported, tmp_path):
    _, report = exported
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_TENSORFLOW, str(SAMPLER), str(report.litert), "-n", "25", "--seed", "4",
         "--temperature", "0.9", "--top-p", "0.95", "--prefix", "a"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()
    assert words == ExportedModel(report.litert).generate(seed=4, num_words=25, temperature=0.9, top_p=0.95,
                                                          prefix="a")


@pytest.mark.slow
def test_standalone_sampler_excludes_words_and_streams_in_chunks(exported, tmp_path, monkeypatch):
    run, report = exported
    standalone = _standalone_sampler()
    monkeypatch.setattr(standalone, "CHUNK", 7)
    words = ExportedModel(report.litert).generate(seed=2, num_words=60)
    assert list(standalone.sample(str(report.litert), 60, 2)) == words
    banned = tmp_path / "banned.txt"
    banned.write_text("\n".join(words[:20]), encoding="utf-8")
    kept = [w for w in words if w not in set(words[:20])]
    assert list(standalone.sample(str(report.litert), len(kept), 2, exclude=frozenset(words[:20]),
                                  max_draws=60)) == kept
    result = subprocess.run([sys.executable, str(SAMPLER), str(report.litert), "-n", "5", "--seed", "2",
                             "--exclude", str(banned), "--max-draws", "20"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split() == [], result
    assert "found 0 of 5" in result.stderr
    result = subprocess.run([sys.executable, str(SAMPLER), str(report.litert), "--temperature", "inf"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "temperature" in result.stderr


@pytest.mark.slow
def test_cli_export_then_sample_and_score_give_the_same_from_every_source(exported):
    run, _ = exported
    result = run_cli("export", str(run.path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["quantize"] == "none" and report["val_check"]["max_abs_diff"] <= 1e-5
    args = ("-n", "12", "--seed", "5", "--temperature", "0.8", "--top-k", "6", "--top-p", "0.9", "--prefix", "a",
            "--min-length", "3", "--json")
    outs = []
    for source in (run.path, report["litert"], report["saved_model"]):
        result = run_cli("sample", str(source), *args)
        assert result.returncode == 0, result.stderr
        outs.append(json.loads(result.stdout))
    assert outs[0]["samples"] == outs[1]["samples"] == outs[2]["samples"]
    assert outs[0]["novelty"] == outs[1]["novelty"] == outs[2]["novelty"] is not None
    assert outs[0]["samples"] == sample_words(run.model, run.vocab, 3, 12, seed=5, temperature=0.8, top_k=6,
                                              top_p=0.9, prefix="a", min_length=3, max_length=run.max_length)
    new = json.loads(run_cli("sample", report["litert"], "-n", "30", "--seed", "1", "--new-only", "--json").stdout)
    assert new["novelty"] == 1.0 and len(new["samples"]) == 30
    scores = [json.loads(run_cli("score", str(source), "emma", "zzqx", "ava", "--json").stdout)["words"]
              for source in (run.path, report["litert"])]
    assert [s["word"] for s in scores[0]] == [s["word"] for s in scores[1]]
    assert [s["nll"] for s in scores[0]] == sorted(s["nll"] for s in scores[0])
    for k, e in zip(*scores):
        assert abs(k["log_prob"] - e["log_prob"]) <= 1e-5 and set(k) == {"word", "nll", "log_prob", "perplexity"}


@pytest.mark.slow
def test_cli_error_is_one_line(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_text("hello")
    result = run_cli("sample", str(broken))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("keras-makemore: error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_compiled_model_runs_every_signature_with_the_interpreters_outputs(exported):
    """LiteRT 2.x's CompiledModel (CPU) runs every signature, at the shapes it allocates, as the Interpreter does."""
    _, report = exported
    assert _compiled_model_agrees(report.litert) == set(SIGNATURES)


def _compiled_model_agrees(path) -> set:
    """The signatures of the .tflite file at `path` whose outputs agree between CompiledModel and Interpreter."""
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.interpreter import Interpreter

    from keras_makemore.quiet import quiet_stderr

    with quiet_stderr():  # the vendors' compiler plugins it cannot load are listed on stderr
        compiled = CompiledModel.from_file(str(path))
    interpreter = Interpreter(model_path=str(path))
    rng = np.random.default_rng(0)
    vocab_size = len(interpreter.get_signature_runner("decode")(tokens=np.zeros((1, 1), np.int32))["vocabulary"])
    settings = {"num_words": 1, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "min_length": 0, "max_length": 0,
                "first_row": 0, "position": 1}
    agree = set()
    for key in compiled.get_signature_list():
        inputs = {}
        for name, detail in compiled.get_input_tensor_details(key).items():
            shape, dtype = [max(1, size) for size in detail["shape"]], np.dtype(detail["dtype"])
            if name in settings:
                inputs[name] = np.full(shape, settings[name], dtype)
            elif dtype == np.float32:
                inputs[name] = rng.normal(size=shape).astype(dtype)
            else:
                inputs[name] = rng.integers(0 if name == "prefix" else 1, vocab_size, shape).astype(dtype)
        buffers = {}
        for name, value in inputs.items():
            buffers[name] = compiled.create_input_buffer_by_name(key, name)
            buffers[name].write(value)
        details = compiled.get_output_tensor_details(key)
        outputs = {name: compiled.create_output_buffer_by_name(key, name) for name in details}
        compiled.run_by_name(key, buffers, outputs)
        expected = interpreter.get_signature_runner(key)(**inputs)
        got = {name: outputs[name].read(int(np.prod(d["shape"])), np.dtype(d["dtype"])).reshape(d["shape"])
               for name, d in details.items()}
        assert set(got) == set(expected), key
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, atol=1e-5, err_msg=f"{key}: {name}")
        agree.add(key)
    return agree
