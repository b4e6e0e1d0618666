"""The model zoo: the contract every model meets, and each model through train, export and every runtime."""

import dataclasses
import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT

from keras_makemore.analysis.evaluation import evaluate_splits, mean_nll
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import read_words
from keras_makemore.data.words import packed_word_sequences, word_sequences
from keras_makemore.errors import UserError
from keras_makemore.models import MODEL_NAMES, REGISTRY, get_model_type
from keras_makemore.models.base import IGNORED, WINDOW, WORD, block_size_for
from keras_makemore.models.keras_model import model_type_of, next_token_logits
from keras_makemore.models.mlp import build_model, model_shape
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import preset_name
from keras_makemore.training.run import load_model

# Small networks of every type, for the fast tests.
TINY = {"mlp": dict(block_size=3, embed_dim=4, hidden_units=16),
        "bigram": dict(block_size=1),
        "wavenet": dict(block_size=4, embed_dim=4, hidden_units=16),
        "bow": dict(embed_dim=8, hidden_units=16),
        "rnn": dict(embed_dim=8, hidden_units=16),
        "gru": dict(embed_dim=8, hidden_units=16),
        "transformer": dict(embed_dim=8, hidden_units=16, layers=2, heads=2, dropout=0.1, pack_words=True)}


# A model type added to the registry trains in these tests at these sizes, with no edit here.
_TINY_ANY = dict(block_size=4, embed_dim=4, hidden_units=8, layers=1, heads=1)


def tiny_config(name: str, words_path, **overrides) -> TrainConfig:
    return TrainConfig(model=name, data=str(words_path), batch_size=16, steps=60, eval_every=30, optimizer="adam",
                       lr=0.01, seed=3, **(TINY.get(name, _TINY_ANY) | overrides))


def test_the_registry_names_every_model_and_each_module_defines_its_own():
    assert MODEL_NAMES[:3] == ("mlp", "bigram", "wavenet") and MODEL_NAMES == tuple(REGISTRY)
    for name in MODEL_NAMES:
        assert get_model_type(name).name == name and get_model_type(name).context in (WINDOW, WORD)
    assert {get_model_type(n).context for n in ("mlp", "bigram", "wavenet")} == {WINDOW}
    assert {get_model_type(n).context for n in ("bow", "rnn", "gru", "transformer")} == {WORD}
    with pytest.raises(UserError, match="model must be one of mlp, bigram"):
        get_model_type("lstm")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_builds_as_counted_and_reloads_in_safe_mode(name, words_path, tmp_path):
    config = tiny_config(name, words_path)
    words = read_words(words_path)
    block_size = block_size_for(get_model_type(name), config.block_size, max(map(len, words)))
    model_type = get_model_type(name)
    model = model_type.build(config, 30, block_size)
    assert model.count_params() == model_type.count_parameters(config, 30, block_size)
    assert model_type_of(model) is model_type and model.get_layer("embedding").input_dim == 30
    x = np.random.default_rng(0).integers(0, 30, (5, block_size)).astype(np.int32)
    assert np.asarray(next_token_logits(model)(x)).shape == (5, 30)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(next_token_logits(loaded)(x), next_token_logits(model)(x))
    again = model_type.build(config, 30, block_size)  # the seed fixes the weights
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_makemore_sizes():
    """makemore.py's default Transformer on names, the lecture's WaveNet: the parameter counts they report."""
    transformer = TrainConfig.from_preset("transformer")
    assert get_model_type("transformer").count_parameters(dataclasses.replace(transformer, hidden_units=256), 27, 16) == 204_571
    wavenet = get_model_type("wavenet").build(TrainConfig(model="wavenet", block_size=8, embed_dim=24,
                                                          hidden_units=128), 27, 8)
    assert sum(int(np.prod(w.shape)) for w in wavenet.trainable_weights) == 76_579
    assert get_model_type("mlp").count_parameters(TrainConfig(), 27, 3) == 11_897


def test_word_sequences_start_with_the_marker_and_ignore_the_padding():
    corpus = Corpus(["ab", "c", "abc", "ba", "cab", "a"], block_size=4)
    x, y = word_sequences(["ab", "c"], corpus.vocab, 4)
    assert x.tolist() == [[0, 1, 2, 0], [0, 3, 0, 0]]
    assert y.tolist() == [[1, 2, 0, -1], [3, 0, -1, -1]]
    assert block_size_for(get_model_type("gru"), 3, 5) == 6
    assert block_size_for(get_model_type("mlp"), 5, 2) == 5


def test_packed_word_sequences_hold_every_word_once_each_within_a_row(words_path):
    words = read_words(words_path)
    corpus = Corpus(words, block_size=16)  # as on names: the fixture's longest word has 8 characters
    x, y = packed_word_sequences(words, corpus.vocab, corpus.block_size)
    alone_x, alone_y = word_sequences(words, corpus.vocab, corpus.block_size)
    assert x.shape[1] == corpus.block_size and len(x) < len(alone_x) / 1.5
    assert (y != IGNORED).sum() == (alone_y != IGNORED).sum()
    found = []
    for inputs, targets in zip(x, y):
        starts = np.flatnonzero((inputs == 0) & (targets != IGNORED))  # a word starts at each marker with a target
        for start, end in zip(starts, [*starts[1:], len(inputs)]):
            word = targets[start:end][targets[start:end] != IGNORED]
            assert word[-1] == 0 and (inputs[start + 1:start + len(word)] == word[:-1]).all()
            found.append(corpus.vocab.decode(word[:-1]))
    assert sorted(found) == sorted(words)


def test_a_packing_model_gives_each_packed_word_the_losses_it_has_alone(words_path):
    """The transformer keeps the words of a row apart: each word's positions, attention and losses are its own."""
    words = read_words(words_path)
    corpus = Corpus(words, block_size=16)
    model = get_model_type("transformer").build(tiny_config("transformer", words_path), corpus.vocab.size,
                                                corpus.block_size)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORED, reduction="sum")
    packed, alone = (rows(words, corpus.vocab, corpus.block_size)
                     for rows in (packed_word_sequences, word_sequences))
    assert float(loss(packed[1], model(packed[0]))) == pytest.approx(float(loss(alone[1], model(alone[0]))), rel=1e-6)
    # Without reading the boundaries (the default network), a packed word would see the words before it.
    causal = get_model_type("transformer").build(tiny_config("transformer", words_path, pack_words=False),
                                                 corpus.vocab.size, corpus.block_size)
    causal.set_weights(model.get_weights())
    assert float(loss(packed[1], causal(packed[0]))) != pytest.approx(float(loss(alone[1], causal(alone[0]))), rel=1e-3)
    assert all(get_model_type(name).packs_words == (name == "transformer") for name in MODEL_NAMES)


def tiny_word_model(name: str, words_path) -> tuple[Corpus, keras.Model]:
    """The words of `words_path` with the context of word model `name`, and its tiny network."""
    config = tiny_config(name, words_path)
    words = read_words(words_path)
    corpus = Corpus(words, block_size_for(get_model_type(name), config.block_size, max(map(len, words))))
    return corpus, get_model_type(name).build(config, corpus.vocab.size, corpus.block_size)


@pytest.mark.parametrize("name", ["bow", "rnn", "gru", "transformer"])
def test_a_word_model_reads_a_window_as_the_word_so_far(name, words_path):
    """Windows of the last tokens give the logits of the whole-sequence pass at each character: causal and exact."""
    corpus, model = tiny_word_model(name, words_path)
    x, y = corpus.examples("train")
    sequences, targets = word_sequences(corpus.split.train, corpus.vocab, corpus.block_size)
    whole = np.asarray(model(sequences, training=False))[targets >= 0]
    np.testing.assert_allclose(np.asarray(next_token_logits(model)(x)), whole, atol=1e-5)
    assert (targets[targets >= 0] == y).all()



@pytest.mark.parametrize("name", ["bow", "rnn", "gru", "transformer"])
def test_a_word_model_is_evaluated_once_per_word_with_the_losses_of_every_window(name, words_path):
    """`evaluate_splits` reads each word once; the mean equals one pass per window (`mean_nll` on the windows)."""
    corpus, model = tiny_word_model(name, words_path)
    losses = evaluate_splits(model, corpus, ("train", "val"))
    for split, loss in losses.items():
        assert loss.examples == len(corpus.windows(split))
        # To float32's rounding: the two passes batch the words differently (a logit in 300 moved by 3e-7).
        assert loss.nll == pytest.approx(mean_nll(model, corpus.windows(split)), rel=1e-8)


def test_weight_decay_leaves_a_models_exempt_variables_alone():
    # Zero gradients leave Adam's update at zero: only the decoupled weight decay moves a variable.
    import tensorflow as tf

    from keras_makemore.training.config import plan_steps
    from keras_makemore.training.recipe import compiled_model

    config = TrainConfig.from_preset("transformer", embed_dim=8, hidden_units=8, layers=1, heads=2, steps=10,
                                     eval_every=10)
    model = compiled_model(config, 5, 4, plan_steps(config, 100), tf.distribute.get_strategy())
    rng = np.random.default_rng(0)
    for variable in model.trainable_variables:  # non-zero everywhere (biases start at zero, which decay keeps)
        variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    exempt = get_model_type("transformer").decay_exempt
    assert exempt
    for variable, old in zip(model.trainable_variables, before):
        moved = not np.array_equal(variable.numpy(), old)
        assert moved == (variable.name not in exempt), variable.path


def test_model_settings_are_checked():
    from keras_makemore.training.recipe import validate_config

    with pytest.raises(UserError, match="block_size must be a power of two for model wavenet"):
        validate_config(TrainConfig(model="wavenet", block_size=6))
    with pytest.raises(UserError, match="embed_dim 10 must be a multiple of heads 4"):
        validate_config(TrainConfig(model="transformer", embed_dim=10))
    with pytest.raises(UserError, match="block_size must be 1 for model bigram"):
        validate_config(TrainConfig(model="bigram", block_size=3))
    with pytest.raises(UserError, match="model must be one of"):
        TrainConfig(model="lstm").validate()
    with pytest.raises(UserError, match="model gru cannot keep words packed in one row apart") as error:
        validate_config(TrainConfig(model="gru", pack_words=True))
    assert error.value.argument == "pack_words"


def test_every_model_but_mlp_has_a_preset_of_its_own():
    for name in MODEL_NAMES:
        preset = preset_name(None, name)
        assert TrainConfig.from_preset(preset, model=name).model == name
        assert preset == (name if name != "mlp" else "lecture")
        get_model_type(name).check(TrainConfig.from_preset(preset, model=name))
    assert preset_name("best", "gru") == "best"


@pytest.fixture(scope="module", params=MODEL_NAMES)
def exported_run(request, tmp_path_factory, words_path):
    from keras_makemore.artifacts.writer import export_run
    from keras_makemore.training.recipe import train

    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    train(tiny_config(request.param, words_path), run_dir, verbose=0)
    return run_dir, export_run(run_dir)


@pytest.mark.slow
def test_every_model_trains_and_exports_to_builtin_ops_within_1e4_of_keras(exported_run):
    from ai_edge_litert.interpreter import Interpreter

    from keras_makemore.analysis.evaluation import evaluate_splits
    from keras_makemore.training.run import Run

    run_dir, report = exported_run
    run = Run.load(run_dir)
    assert abs(report.check.exported_loss - report.check.keras_loss) < 1e-4
    assert report.check.max_abs_diff < 1e-4
    assert report.check.keras_loss == pytest.approx(evaluate_splits(run.model, run.corpus(), ("val",))["val"].nll)
    history = json.loads((run_dir / "history.json").read_text())
    assert min(history["val_loss"]) == pytest.approx(report.check.keras_loss, abs=1e-4)  # the metric trained on
    ops = {op["op_name"] for op in Interpreter(model_path=str(report.litert))._get_ops_details()}
    assert ops and not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops


_OPTIONS = [{}, {"temperature": 1.4, "top_k": 6, "top_p": 0.9, "prefix": "a", "min_length": 3, "max_length": 20}]


@pytest.mark.slow
@pytest.mark.parametrize("options", _OPTIONS, ids=["defaults", "controls"])
def test_every_model_samples_the_same_words_on_every_runtime(exported_run, options):
    from keras_makemore.artifacts.reader import ExportedModel
    from keras_makemore.sampling.graph import FEW_WORDS
    from keras_makemore.sampling.scoring import score_words
    from keras_makemore.sampling.words import sample_words
    from keras_makemore.training.run import Run

    run_dir, report = exported_run
    run = Run.load(run_dir)
    keras_words = sample_words(run.model, run.vocab, run.config.block_size, 40, seed=5,
                               **({"max_length": run.max_length} | options))
    assert len(set(keras_words)) > 5 and all(w.startswith(options.get("prefix", "")) for w in keras_words)
    for artifact in (report.litert, report.saved_model):
        exported = ExportedModel(artifact)
        assert exported.block_size == run.config.block_size
        assert sample_words(exported, exported.vocab, exported.block_size, 40, seed=5, **options) == keras_words
        for count, first_row in ((1, 3), (FEW_WORDS, 32)):  # calls of a few words take a loop of their own
            few = exported.generate(seed=5, num_words=count, first_row=first_row, **options)
            assert few == keras_words[first_row:first_row + count]
    sampler = subprocess.run([sys.executable, str(ROOT / "export" / "sample_tflite.py"), str(report.litert), "-n", "40",
                              "--seed", "5", *_sampler_flags(options)], capture_output=True, text=True, timeout=120)
    assert sampler.stdout.split("\n")[:40] == keras_words, sampler.stderr
    words = run.corpus().split.val[:20] + ["", "a" * (run.max_length - 1)]
    keras_scores = score_words(run.model, run.vocab, words)
    litert_scores = score_words(ExportedModel(report.litert), run.vocab, words)
    np.testing.assert_allclose([s.nll for s in litert_scores], [s.nll for s in keras_scores], atol=1e-4)


def _sampler_flags(options: dict) -> list[str]:
    return [f for name, value in options.items() for f in (f"--{name.replace('_', '-')}", str(value))]


class _StopAfterFirstInterval(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt  # BackupAndRestore, listed earlier, has saved the epoch


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides", [("wavenet", {}), ("gru", {}), ("transformer", {"dropout": 0.1})])
def test_an_interrupted_run_resumes_bit_identically(name, overrides, tmp_path, words_path):
    """BatchNorm's moving statistics, dropout's seeds and the word minibatches all continue where they stopped."""
    from keras_makemore.training.recipe import train

    config = tiny_config(name, words_path, **overrides)
    whole = train(config, tmp_path / "whole", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", verbose=0, callbacks=[_StopAfterFirstInterval()])
    resumed = train(None, tmp_path / "cut", verbose=0, resume=True)
    assert resumed.history["val_loss"] == whole.history["val_loss"]
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_a_word_model_through_every_command(tmp_path, words_path):
    """`train --model transformer` (with `--lr auto`), then every command that reads a run or its export."""
    from conftest import run_cli

    run_dir = tmp_path / "run"
    sizes = ["--data", str(words_path), "--model", "transformer", "--embed-dim", "8", "--hidden", "16",
             "--layers", "1", "--heads", "2", "--batch-size", "16", "--seed", "3"]
    trained = run_cli("train", *sizes, "--out", str(run_dir), "--steps", "40", "--eval-every", "20", "--lr", "auto")
    assert trained.returncode == 0, trained.stderr
    assert "lr-find: training with --lr" in trained.stdout and "training transformer:" in trained.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "transformer"
    found = run_cli("lr-find", *sizes, "--out", str(tmp_path / "lr"), "--num-steps", "20")
    assert found.returncode == 0 and "suggested learning rate" in found.stdout, found.stderr
    evaluated = json.loads(run_cli("evaluate", str(run_dir), "--json").stdout)
    exported = run_cli("export", str(run_dir))
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((run_dir / "export" / "export.json").read_text())
    assert abs(manifest["litert"]["model.tflite"]["val_check"]["exported_loss"] - evaluated["losses"]["val"]["nll"]) < 1e-4
    controls = ["-n", "12", "--seed", "9", "--temperature", "0.9", "--top-p", "0.95", "--prefix", "e", "--json"]
    from_run = json.loads(run_cli("sample", str(run_dir), *controls).stdout)["samples"]
    from_litert = json.loads(run_cli("sample", str(run_dir / "export" / "model.tflite"), *controls).stdout)["samples"]
    assert from_run == from_litert and len(from_run) == 12
    scored = [run_cli("score", str(path), "emma", "xq", "--json") for path in (run_dir, run_dir / "export" / "model.tflite")]
    assert [json.loads(s.stdout)["words"][0]["word"] for s in scored] == ["emma", "emma"]
    for command in ("plot", "report"):
        assert run_cli(command, str(run_dir)).returncode == 0
    report = (run_dir / "report.md").read_text()
    assert "`transformer`: Embedding + position" in report and "| model | transformer |" in report
    assert (run_dir / "embeddings.png").stat().st_size > 10_000


@pytest.mark.slow
def test_every_model_samples_the_same_words_in_the_browser(exported_run, chromium):
    """The page (LiteRT.js in headless Chromium) shows the words of export/sample_tflite.py, for every model."""
    from conftest import web_page

    _, report = exported_run
    with web_page(chromium, report.litert) as show:
        shown = show(model="model.tflite", seed=4, n=30, temperature=0.8, top_k=5, prefix="a")
    sampler = subprocess.run([sys.executable, str(ROOT / "export" / "sample_tflite.py"), str(report.litert), "-n", "30",
                              "--seed", "4", "--temperature", "0.8", "--top-k", "5", "--prefix", "a"],
                             capture_output=True, text=True, timeout=120)
    assert shown["error"] is None and shown["words"] == sampler.stdout.splitlines()


_COPIED_MODEL = """
import sys
sys.path.insert(0, {folder!r})
from keras_makemore import models
models.REGISTRY[{name!r}] = {module!r}  # the one line a new model type adds to the registry
models.MODEL_NAMES = tuple(models.REGISTRY)
from keras_makemore.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # trains, exports and samples in subprocesses
def test_a_model_module_copied_under_a_new_name_is_a_new_model_type(tmp_path, words_path):
    """A copy of a model type's module, registered under a new name and edited nowhere else, trains, exports and
    samples as that model type: its network, presets and search rows come with it."""

    (tmp_path / "my_models").mkdir()
    (tmp_path / "my_models" / "__init__.py").write_text("")
    shutil.copy(ROOT / "keras_makemore" / "models" / "gru.py", tmp_path / "my_models" / "gru2.py")
    program = tmp_path / "with_copy.py"
    program.write_text(_COPIED_MODEL.format(folder=str(tmp_path), name="gru2", module="my_models.gru2"))

    def cli(*args):
        result = subprocess.run([sys.executable, str(program), *args], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result.stdout

    run = tmp_path / "run"
    cli("train", "--model", "gru2", "--data", str(words_path), "--embed-dim", "8", "--hidden-units", "8",
        "--batch-size", "16", "--steps", "40", "--eval-every", "20", "--out", str(run), "--quiet", "--samples", "0")
    assert json.loads((run / "config.json").read_text())["model"] == "gru2"
    cli("export", str(run))
    from_run = cli("sample", str(run), "-n", "6", "--seed", "3").split()
    from_tflite = cli("sample", str(run / "export" / "model.tflite"), "-n", "6", "--seed", "3").split()
    assert from_run == from_tflite and len(from_run) >= 6
    assert "gru2" in cli("train", "--help") and "gru2" in cli("tune", "--help")
def test_the_recurrent_networks_learn_their_start_state_as_makemore_py_does():
    """makemore.py's RNN and GRU at the presets' sizes: 11,803 and 79,451 parameters, the start state included."""
    for name, expected in (("rnn", 11_803), ("gru", 79_451)):
        config = TrainConfig.from_preset(name)
        assert get_model_type(name).count_parameters(config, 27, 16) == expected
        model = get_model_type(name).build(config, 27, 16)
        assert model.count_params() == expected
        start = model.get_layer("start")
        assert start.trainable_weights[0].shape == (1, config.hidden_units)
        assert not start.get_weights()[0].any()  # zeros, as makemore.py's


@pytest.mark.parametrize("compact", [False, True], ids=["fixed", "compact"])
@pytest.mark.parametrize("name", ["bow", "rnn", "gru", "transformer"])
def test_a_word_model_fed_one_token_at_a_time_gives_the_whole_sequence_logits(name, compact, words_path):
    """`decoder`: the state carried from position to position gives the logits of the whole-sequence pass."""
    from keras_makemore.models.keras_model import decoder

    corpus, model = tiny_word_model(name, words_path)
    rng = np.random.default_rng(0)
    for variable in model.weights:  # weights far from their initial values, the start state included
        variable.assign(variable.numpy() + rng.normal(0, 0.3, variable.shape).astype("float32"))
    sequences, targets = word_sequences(corpus.split.train[:50], corpus.vocab, corpus.block_size)
    whole = np.asarray(model(sequences, training=False))
    steps = decoder(model, compact=compact)
    assert steps.length == corpus.block_size
    state = steps.initial_state(len(sequences))
    for position in range(corpus.block_size):
        logits, state = steps.step(sequences[:, position], np.int32(position), state)
        real = targets[:, position] >= 0  # the word's characters and its end marker
        np.testing.assert_allclose(np.asarray(logits)[real], whole[real, position], atol=1e-5)


@pytest.mark.parametrize("name", ["bow", "rnn", "gru", "transformer"])
def test_a_word_model_samples_the_words_of_the_whole_sequence_pass(name, words_path):
    """`generate` with the state carried draws the words that rerunning the whole sequence drew, long ones too."""
    import tensorflow as tf

    from keras_makemore.models.keras_model import decoder
    from keras_makemore.sampling.controls import SamplingControls
    from keras_makemore.sampling.graph import FEW_WORDS, generate_tokens

    corpus, model = tiny_word_model(name, words_path)
    rng = np.random.default_rng(1)
    for variable in model.weights:
        variable.assign(variable.numpy() + rng.normal(0, 0.2, variable.shape).astype("float32"))
    bias = model.get_layer("logits").bias
    bias.assign(bias.numpy() + 2.5 * (np.arange(bias.shape[0]) == 0))  # words of every length, some past T - 1
    logits_fn = next_token_logits(model)
    decoders = {"decoder": decoder(model, compact=True), "few_words_decoder": decoder(model)}
    lengths = []
    for options in ({"temperature": 1.5}, {"temperature": 0.7, "top_k": 5, "prefix": "a", "min_length": 3}):
        # 40 characters a word at most: past T - 1 a word goes on through the window of its last T tokens
        inputs = {k: tf.constant(v) for k, v in SamplingControls(**options).inputs(corpus.vocab, 40).items()}
        for count, first_row in ((300, 0), (FEW_WORDS, 0), (FEW_WORDS, 77), (1, 5)):  # many words, and few
            words = [generate_tokens(logits_fn, tf.constant(7), tf.constant(first_row), tf.constant(count),
                                     block_size=corpus.block_size, **d, **inputs).numpy() for d in ({}, decoders)]
            np.testing.assert_array_equal(words[1], words[0])
            lengths.append((count, (words[0] > 0).sum(axis=1).max(), (words[0] > 0).sum(axis=1).min()))
    # Short words, and words past T - 1 in calls of many words and of a few (which go on past the few words' loop)
    assert min(shortest for _, _, shortest in lengths) < 5, lengths
    for calls in (range(1, FEW_WORDS + 1), range(FEW_WORDS + 1, 301)):
        assert any(count in calls and longest >= corpus.block_size for count, longest, _ in lengths), lengths


def _words_by_decode_step(exported, seed: int, num_words: int, positions: int) -> list[str]:
    """Words drawn by driving `initial_state` and `decode_step` from numpy, with `generate`'s uniforms and rule."""
    from keras_makemore.sampling.graph import seeded_uniforms

    uniforms = seeded_uniforms(seed, num_words, exported.max_length)
    state = exported.initial_state(num_words)
    token = np.zeros(num_words, np.int32)
    words = np.zeros((num_words, exported.max_length), np.int32)
    alive = np.ones(num_words, bool)
    for position in range(min(positions, exported.max_length)):
        logits, state = exported.decode_step(token, position, state)
        weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
        cdf = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1, dtype=np.float32)
        token = np.minimum((cdf < uniforms[:, position, None] * cdf[:, -1:]).sum(axis=-1), cdf.shape[-1] - 1)
        token = np.where(alive, token, 0).astype(np.int32)
        words[:, position] = token
        alive &= token != 0
    # A word still growing at a word model's block_size goes on through next_token on its last block_size tokens
    # (not done here); at max_length it is cut, as generate cuts it.
    alive &= positions < exported.max_length
    return [exported.vocab.decode(row) if not growing else None for row, growing in zip(words, alive)]


@pytest.mark.slow
def test_every_model_generates_its_words_through_its_decode_step_signature(exported_run):
    """An app's own loop over `initial_state` and `decode_step` draws `generate`'s words, in both artifacts."""
    from keras_makemore.artifacts.reader import ExportedModel

    run_dir, report = exported_run
    word_model = get_model_type(json.loads((run_dir / "config.json").read_text())["model"]).context == WORD
    for artifact in (report.litert, report.saved_model):
        exported = ExportedModel(artifact)
        state = exported.initial_state(3)
        assert state.shape[0] == 3 and state.dtype in (np.float32, np.int32)
        one = exported._signatures["decode_step_one"]  # one word, fixed shapes: zeros at the start marker
        logits, state = exported.decode_step(np.zeros(1, np.int32), 0, exported.initial_state(1))
        out = one(token=np.zeros(1, np.int32), position=np.int32(0), state=np.zeros_like(state))
        np.testing.assert_allclose(out["logits"], logits, atol=1e-5)
        np.testing.assert_allclose(out["state"], state, atol=1e-5)
        positions = exported.block_size if word_model else exported.max_length  # a window model's have no limit
        stepped, generated = _words_by_decode_step(exported, 11, 40, positions), exported.generate(seed=11, num_words=40)
        assert sum(w is not None for w in stepped) >= 30
        assert [w for w in stepped if w is not None] == [g for w, g in zip(stepped, generated) if w is not None]


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_a_recurrent_model_saved_before_the_start_state_was_learned_still_loads_and_samples(cell, tmp_path):
    """A model file without the `start` layer (as earlier runs wrote it) starts from zeros, through every path."""
    import tensorflow as tf

    from keras_makemore.models.keras_model import decoder
    from keras_makemore.sampling.controls import SamplingControls
    from keras_makemore.sampling.graph import generate_tokens

    tokens = keras.Input(shape=(8,), dtype="int32", name="sequence")
    x = keras.layers.Embedding(6, 4, name="embedding")(tokens)
    layer = keras.layers.GRU(5, reset_after=False, return_sequences=True, unroll=True, name=cell) if cell == "gru" \
        else keras.layers.SimpleRNN(5, return_sequences=True, unroll=True, name=cell)
    old = keras.Model(tokens, keras.layers.Dense(6, name="logits")(layer(x)), name=f"{cell}_language_model")
    old.save(tmp_path / "model.keras")
    model = load_model(tmp_path / "model.keras")
    assert [layer.name for layer in model.layers] == ["sequence", "embedding", cell, "logits"]
    sequences = np.random.default_rng(0).integers(1, 6, (3, 8)).astype(np.int32)
    sequences[:, 0] = 0
    steps = decoder(model)
    state = steps.initial_state(3)
    assert not np.asarray(state[0]).any()
    whole = np.asarray(model(sequences))
    for position in range(8):
        logits, state = steps.step(sequences[:, position], np.int32(position), state)
        np.testing.assert_allclose(np.asarray(logits), whole[:, position], atol=1e-5)
    from keras_makemore.data.vocabulary import Vocabulary

    inputs = {k: tf.constant(v) for k, v in SamplingControls().inputs(Vocabulary("abcde"), 12).items()}
    words = [generate_tokens(next_token_logits(model), tf.constant(1), tf.constant(0), tf.constant(count),
                             block_size=8, **d, **inputs).numpy()
             for count in (5, 20) for d in ({}, {"decoder": decoder(model, compact=True), "few_words_decoder": steps})]
    np.testing.assert_array_equal(words[1], words[0])
    np.testing.assert_array_equal(words[3], words[2])


# The lecture's MLP (`build_model`)
def test_layers_and_shapes():
    model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=200)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Embedding", "Flatten", "Dense", "Dense"]
    assert model.get_layer("hidden").activation is keras.activations.tanh
    logits = model(np.zeros((5, 3), np.int32))
    assert logits.shape == (5, 27)
    # C: 27x10, W1: 30x200 + 200, W2: 200x27 + 27 -- the lecture's 11,897 parameters
    assert model.count_params() == 27 * 10 + 30 * 200 + 200 + 200 * 27 + 27 == 11897
    assert model_shape(model) == {"vocab_size": 27, "block_size": 3, "embed_dim": 10, "hidden_units": 200,
                                  "dropout": 0.0, "direct_connections": False}


def test_other_sizes():
    model = build_model(vocab_size=100, block_size=8, embed_dim=24, hidden_units=64)
    assert model(np.ones((2, 8), np.int32)).shape == (2, 100)
    assert model.get_layer("concat").output.shape == (None, 8 * 24)


def test_keras_format_round_trip(tmp_path):
    model = build_model(vocab_size=30, block_size=4, embed_dim=5, hidden_units=16)
    x = np.random.default_rng(0).integers(0, 30, (64, 4)).astype(np.int32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert model_shape(loaded) == model_shape(model)


def test_dropout_and_direct_connections():
    model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=50, dropout=0.2,
                        direct_connections=True)
    x = np.ones((4, 3), np.int32)
    assert model(x).shape == (4, 27)
    assert model.get_layer("direct").kernel.shape == (30, 27)  # W3: embeddings straight to the output
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.array_equal(model(x, training=True), model(x, training=False))
    shape = model_shape(model)
    assert shape["dropout"] == 0.2 and shape["direct_connections"] is True
