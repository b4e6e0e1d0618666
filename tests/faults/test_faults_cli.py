"""Faults of values, the command line, the Python API and damaged run files: one clear line, exit 2, no
traceback; interrupted training resumes; artifacts are never half-written."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import run_cli

from keras_makemore import atomic
from keras_makemore.cli import main
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.training import rundir
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, path)
    return path


# Values

@pytest.mark.slow
@pytest.mark.parametrize("flags, needle", [
    (("--temperature", "1e-50"), "--temperature must be a finite number of at least 1e-06, got 1e-50: try 1.0"),
    (("--max-length", "0"), "--max-length must be a whole number of at least 1, got 0"),
    (("--max-length", "2147483647"), "--max-length must be at most 4,096, got 2,147,483,647"),
])
def test_sampling_values_out_of_range(trained_run, flags, needle):
    _one_line_error(run_cli("sample", str(trained_run.run_dir), "-n", "2", *flags), needle)


def test_a_tiny_temperature_samples_greedily(trained_run):
    from keras_makemore.sampling.words import sample_words

    run = trained_run
    words = sample_words(run.model, run.corpus.vocab, run.config.block_size, 5, seed=0, temperature=1e-6)
    assert len(set(words)) == 1 and words[0]  # the likeliest word each time, not an empty one
    with pytest.raises(UserError, match="at least 1e-06"):
        sample_words(run.model, run.corpus.vocab, run.config.block_size, 5, seed=0, temperature=1e-50)


# The command line

@pytest.mark.slow
def test_train_out_empty_is_refused(tmp_path):
    line = _one_line_error(run_cli("train", "--out", "", "--steps", "10", cwd=tmp_path))
    assert line == "keras-makemore: error: --out must name a directory, got an empty string"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_score_reads_words_after_its_options(trained_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("ava\n")
    result = run_cli("score", str(trained_run.run_dir), "--json", "emma")
    assert result.returncode == 0, result.stderr
    assert [w["word"] for w in json.loads(result.stdout)["words"]] == ["emma"]
    result = run_cli("score", str(trained_run.run_dir), "--file", str(words), "emma", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(w["word"] for w in json.loads(result.stdout)["words"]) == ["ava", "emma"]


@pytest.mark.parametrize("argv, line", [
    (["--bogus"], "keras-makemore: error: unrecognized arguments: --bogus (see keras-makemore --help)"),
    (["score", "RUN", "--bogus"], "keras-makemore: error: score: unrecognized arguments: --bogus "
                                  "(see keras-makemore score --help)"),
    (["sample", "RUN", "-n", "many"], "keras-makemore: error: sample: argument -n/--num: invalid int value: 'many' "
                                      "(see keras-makemore sample --help)"),
    (["nonsense"], "keras-makemore: error: argument COMMAND: invalid choice: 'nonsense' (choose from 'train', "
                   "'lr-find', 'evaluate', 'sample', 'score', 'plot', 'sweep', 'tune', 'report', 'export') "
                   "(see keras-makemore --help)"),
])
def test_argparse_errors_are_one_line_with_the_right_help(argv, line, capsys):
    from keras_makemore.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == line


def test_version_and_no_command(capsys):
    from keras_makemore import __version__
    from keras_makemore.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"keras-makemore {__version__}\n"
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-makemore [-h] [--version] COMMAND ...") and "train" in out


@pytest.mark.parametrize("message, argument, flags, expected", [
    ("run_dir r holds an interrupted run: continue it with resume=True, or choose another run_dir", "run_dir",
     {"run_dir": "--out", "resume": "--resume"},
     "--out r holds an interrupted run: continue it with --resume, or choose another --out"),
    ("start_lr must be above 0 and below end_lr, got start_lr=1.0 and end_lr=1e-05: lower start_lr", "start_lr",
     {"start_lr": "--start-lr", "end_lr": "--end-lr"},
     "--start-lr must be above 0 and below end_lr, got --start-lr 1.0 and --end-lr 1e-05: lower --start-lr"),
    ("model gru cannot keep words packed in one row apart: train it with pack_words=False", "pack_words",
     {"pack_words": "--pack-words"},
     "model gru cannot keep words packed in one row apart: train it with --no-pack-words"),
    ("config.json is corrupt (block_size must be an int)", None, {"block_size": "--block-size"},
     "config.json is corrupt (block_size must be an int)"),
])
def test_cli_messages_speak_in_flags(message, argument, flags, expected):
    from keras_makemore.cli import _in_flag_terms

    assert _in_flag_terms(UserError(message, argument=argument), flags) == expected


# The Python API

def test_a_wrong_block_size_is_refused_and_poisons_nothing(trained_run):
    from keras_makemore.sampling.scoring import score_words
    from keras_makemore.sampling.words import sample_words

    run, block = trained_run, trained_run.config.block_size
    vocab = run.corpus.vocab
    before = sample_words(run.model, vocab, block, 5, seed=1)
    with pytest.raises(UserError, match=f"block_size {block + 2} is not the model's context length {block}"):
        sample_words(run.model, vocab, block + 2, 5, seed=1)
    with pytest.raises(UserError, match=f"block_size {block + 2} is not the model's context length"):
        score_words(run.model, vocab, ["emma"], block_size=block + 2)
    assert sample_words(run.model, vocab, block, 5, seed=1) == before


def test_the_graph_cache_is_keyed_by_block_size(trained_run):
    from keras_makemore.sampling.graph import keras_graph_function
    from keras_makemore.sampling.scoring import _SCORE_SIGNATURE, score_tokens

    model = trained_run.model
    assert keras_graph_function(model, 3, score_tokens, _SCORE_SIGNATURE) is not \
        keras_graph_function(model, 4, score_tokens, _SCORE_SIGNATURE)


def test_a_vocabulary_of_another_size_or_type_is_refused(trained_run):
    from keras_makemore.data.vocabulary import Vocabulary
    from keras_makemore.sampling.scoring import score_words
    from keras_makemore.sampling.words import sample_words

    run = trained_run
    size = run.corpus.vocab.size
    smaller = Vocabulary(run.corpus.vocab.chars[:-1])
    with pytest.raises(ValueError, match=f"vocab has {size - 1} tokens but the model predicts {size}"):
        sample_words(run.model, smaller, run.config.block_size, 3, seed=0)
    with pytest.raises(ValueError, match=f"vocab has {size - 1} tokens but the model predicts {size}"):
        score_words(run.model, smaller, ["a"])
    with pytest.raises(ValueError, match="vocab must be a Vocabulary .* got str"):
        sample_words(run.model, "abc", run.config.block_size, 3, seed=0)


# Damaged run files: one loader, which names the file and the problem

def _edit_json(path, **changes):
    info = json.loads(path.read_text())
    info.update(changes)
    path.write_text(json.dumps(info))


DAMAGE = {
    "history.csv not UTF-8": (lambda run: (run / "history.csv").write_bytes(b"epoch,loss\n0,\xff\xfe\n"),
                              "history.csv of the run is damaged (not a UTF-8 CSV file: UnicodeDecodeError)"),
    "history.csv garbage": (lambda run: (run / "history.csv").write_text("epoch,loss,val_loss\n0,abc,1.0\n"),
                            "history.csv of the run is damaged (line 2: loss is not a number)"),
    "history.csv missing column": (lambda run: (run / "history.csv").write_text("epoch,loss,val_loss\n0,2.0\n"),
                                   "history.csv of the run is damaged (line 2: val_loss is not a number)"),
    "history.csv no epoch": (lambda run: (run / "history.csv").write_text("loss,val_loss\n2.0,2.1\n"),
                             "history.csv of the run is damaged (its header must start with epoch"),
    "total_steps 1e11": (lambda run: _edit_json(run / "config.json", step_plan={
        "total_steps": 10**11, "epochs": 10**6, "steps_per_epoch": 10**5, "steps_per_execution": 1000}),
        "config.json of the run is damaged (step_plan must hold whole numbers from 1 to 1,000,000,000"),
    "step_plan does not add up": (lambda run: _edit_json(run / "config.json", step_plan={
        "total_steps": 600, "epochs": 7, "steps_per_epoch": 300, "steps_per_execution": 300}),
        "config.json of the run is damaged (step_plan does not add up"),
    "max_word_length text": (lambda run: _edit_json(run / "config.json", max_word_length="long"),
                             "config.json of the run is damaged (max_word_length must be a whole number from 1"),
    "history.json garbage": (lambda run: (run / "history.json").write_text('{"loss": "x"}'),
                             "history.json of the run is damaged (it must map each log to a list of numbers)"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_run_files_are_named(run_copy, case):
    from keras_makemore.analysis.plots import plot_run
    from keras_makemore.analysis.report import write_report

    damage, needle = DAMAGE[case]
    damage(run_copy)
    with pytest.raises(UserError) as raised:
        write_report(run_copy, num_samples=2)
    assert needle in str(raised.value) and str(raised.value).endswith("retrain the run, or restore the file")
    if not case.startswith(("history.json", "max_word_length")):  # plot reads neither
        with pytest.raises(UserError, match="of the run is damaged"):
            plot_run(run_copy)


@pytest.mark.slow
def test_damaged_run_files_in_the_cli(run_copy):
    DAMAGE["max_word_length text"][0](run_copy)
    _one_line_error(run_cli("sample", str(run_copy), "-n", "2"), "config.json of the run is damaged (max_word_length")
    (run_copy / "history.json").unlink()
    DAMAGE["history.csv garbage"][0](run_copy)
    for command in (("plot", str(run_copy)), ("train", "--resume", str(run_copy))):
        _one_line_error(run_cli(*command), "history.csv of the run is damaged (line 2: loss is not a number)")


def test_a_plot_of_a_long_run_needs_no_array_of_every_step(run_copy):
    """A plan of 10^9 steps (the most a file may say) is drawn from 4,000 points of the schedule."""
    from keras_makemore.analysis.plots import plot_run

    _edit_json(run_copy / "config.json", step_plan={"total_steps": 10**9, "epochs": 2, "steps_per_epoch": 5 * 10**8,
                                                     "steps_per_execution": 1000})
    embeddings, loss = plot_run(run_copy)
    assert loss.stat().st_size > 1000


# Sizes and numbers, vocabularies, long words and lines, divergence, terminal output

def _flags_of_train() -> set[str]:
    from keras_makemore.cli import build_parser

    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    return {o for a in train._actions for o in a.option_strings}


def test_the_resume_hints_name_flags_that_exist(tmp_path, capsys):
    import re

    from keras_makemore.cli import main

    assert main(["train", "--resume", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert line == (f"keras-makemore: error: --resume {tmp_path} holds no run to resume (no config.json): check the "
                    "path, or start a new run there instead of resuming")
    (tmp_path / "backup").mkdir()
    assert main(["train", "--out", str(tmp_path), "--steps", "10"]) == 2
    hint = capsys.readouterr().err.strip()
    assert hint == (f"keras-makemore: error: --out {tmp_path} holds an interrupted run: continue it with --resume, "
                    "or choose another --out")
    assert set(re.findall(r"--[a-z][a-z-]*", line + hint)) <= _flags_of_train()


def _main_error(capsys, *argv) -> str:
    from keras_makemore.cli import main

    assert main(list(argv)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), captured.err
    return lines[0].removeprefix("keras-makemore: error: ")


@pytest.mark.parametrize("flags, expected", [
    (("--steps", "100000000000000000000"),
     "--steps must be at most 1,000,000,000 (years of training), got 100,000,000,000,000,000,000"),
    (("--steps", str(2**61 - 1)), f"--steps must be at most 1,000,000,000 (years of training), got {2**61 - 1:,}"),
    (("--seed", "99999999999999999999"),
     "--seed must be a whole number from -2147483648 to 2147483647, got 99999999999999999999"),
    (("--split-seed", "-2147483649"),
     "--split-seed must be a whole number from -2147483648 to 2147483647, got -2147483649"),
    (("--batch-size", "100000000"),
     "--batch-size must be at most 131,072 (a minibatch holds at most 262,144 characters), got 100,000,000"),
    (("--batch-size", "2147483648"),
     "--batch-size must be at most 131,072 (a minibatch holds at most 262,144 characters), got 2,147,483,648"),
    (("--model", "transformer", "--batch-size", "10000000"),
     "--batch-size must be at most 131,072 (a minibatch holds at most 262,144 characters), got 10,000,000"),
    (("--threads", "100000"), "--threads must be 0 (TensorFlow's default, one per core) to 256, got 100000"),
    (("--model", "transformer", "--layers", "400", "--embed-dim", "4", "--heads", "1", "--hidden", "4"),
     "--layers must be at most 16 for model transformer (deeper networks take minutes to compile before the first "
     "step), got 400"),
    (("--model", "transformer", "--layers", "100", "--embed-dim", "4", "--heads", "1", "--hidden", "4"),
     "--layers must be at most 16 for model transformer (deeper networks take minutes to compile before the first "
     "step), got 100"),
    (("--lr-drop", "100000000000000000000:0.01"),
     "--lr-drop steps must be positive and increasing, got [100000000000000000000]: e.g. [(100000, 0.01)]"),
])
def test_sizes_and_numbers_out_of_range_are_one_line(tmp_path, capsys, words_path, flags, expected):
    out = tmp_path / "run"
    line = _main_error(capsys, "train", "--data", str(words_path), "--out", str(out), "--steps", "20",
                       "--eval-every", "10", "--quiet", "--samples", "0", *flags)
    assert line == expected
    assert not out.exists()


def test_a_batch_of_too_many_characters_is_refused_once_the_words_are_read(tmp_path, capsys, words_path):
    """The limit is on characters: a word model's rows are its longest word long."""
    from keras_makemore.data.reading import read_words

    row = max(map(len, read_words(words_path))) + 2  # the inputs' markers and the word, and the target
    batch = 2**18 // row + 1
    out = tmp_path / "run"
    line = _main_error(capsys, "train", "--model", "gru", "--data", str(words_path), "--out", str(out),
                       "--batch-size", str(batch), "--steps", "20", "--quiet")
    assert line == (f"--batch-size {batch:,} of {row:,} characters each (model gru) makes minibatches of "
                    f"{batch * row:,} characters, over the limit of 262,144: use a batch_size of at most "
                    f"{2**18 // row:,}").replace("batch_size", "--batch-size")
    assert not out.exists()


def test_step_planning_is_fast_for_any_allowed_value_and_reads_back():
    import time

    from keras_makemore.training.config import MAX_STEPS, TrainConfig, plan_steps

    started = time.perf_counter()
    plans = [plan_steps(TrainConfig(steps=steps, eval_every=every), 1)
             for steps, every in ((999_999_937, 10_000), (999_999_937, 1), (MAX_STEPS, 1), (MAX_STEPS - 1, 10),
                                  (24_000, 2_000), (200_000, 10_000))]
    assert time.perf_counter() - started < 2  # 999,999,937 took 93 s when epochs were tried one by one
    assert plans[0] == (MAX_STEPS, 100_000, 10_000, 1_000)  # a prime: rounded up to whole epochs
    assert plans[1] == (999_999_937, 999_999_937, 1, 1)
    assert plans[4:] == [(24_000, 12, 2_000, 1_000), (200_000, 20, 10_000, 1_000)]
    for plan in plans:  # what a run starts with, a run directory reads back
        assert rundir.step_plan({"step_plan": plan._asdict()}) == plan
    with pytest.raises(UserError, match="steps 999,999,999 would plan 1,000,000,001 steps, over the limit"):
        plan_steps(TrainConfig(steps=MAX_STEPS - 1, eval_every=7), 1)  # rounded up to whole epochs: one line
    with pytest.raises(UserError, match="epochs 20,000,000 would plan 2,000,000,000 steps, over the limit of "
                                        "1,000,000,000"):
        plan_steps(TrainConfig(epochs=20_000_000, batch_size=1), 100)


def test_line_lengths_are_counted_in_characters_from_the_bytes():
    from keras_makemore.data.reading import MAX_LINE_CHARS, check_line_lengths

    for line in ("a" * MAX_LINE_CHARS, "é" * MAX_LINE_CHARS, "𠀀" * MAX_LINE_CHARS):  # 1, 2 and 4 bytes a character
        check_line_lengths(("emma\n" + line + "\nava").encode(), "f.txt")
        with pytest.raises(UserError, match=f"data file f.txt line 2 has {MAX_LINE_CHARS + 1:,} characters, over "
                                            f"the limit of {MAX_LINE_CHARS:,} a line: split it into words"):
            check_line_lengths(("emma\n" + line + "é\nava").encode(), "f.txt")


@pytest.fixture
def long_line_file(tmp_path):
    """A data file whose third line is one character over the limit: 1 MB, where a 1-GB line took 7.45 GiB."""
    from keras_makemore.data.reading import MAX_LINE_CHARS

    path = tmp_path / "long.txt"
    path.write_text("emma\nava\n" + "a" * (MAX_LINE_CHARS + 1) + "\nolivia\nmia\nzoe\nisla\n")
    return path


@pytest.fixture
def never_encoded(monkeypatch):
    """Fail the test if any data is turned into code points."""
    from keras_makemore.data import corpus, streaming

    def never(*args, **kwargs):
        raise AssertionError("the data was encoded before its lines were checked")

    monkeypatch.setattr(corpus, "code_points", never)
    monkeypatch.setattr(streaming, "code_points", never)


LONG_LINE = "file {path} line 3 has 1,048,577 characters, over the limit of 1,048,576 a line: split it into words, " \
            "one a line"


@pytest.mark.parametrize("model", ["mlp", "gru"])
def test_a_line_over_the_limit_is_refused_before_it_is_encoded(tmp_path, capsys, long_line_file, never_encoded,
                                                                 model):
    out = tmp_path / "run"
    line = _main_error(capsys, "train", "--model", model, "--data", str(long_line_file), "--out", str(out),
                       "--steps", "20", "--quiet")
    assert line == "--data " + LONG_LINE.format(path=long_line_file)
    assert not out.exists()


def test_evaluate_and_score_refuse_a_line_over_the_limit(trained_run, capsys, long_line_file, never_encoded):
    run = str(trained_run.run_dir)
    expected = LONG_LINE.format(path=long_line_file)
    assert _main_error(capsys, "evaluate", run, "--data", str(long_line_file)).endswith(expected)
    assert _main_error(capsys, "score", run, "--file", str(long_line_file)) == "data " + expected


def test_a_streamed_file_refuses_a_line_over_the_limit_before_reading_it_whole(tmp_path):
    from keras_makemore.data.reading import MAX_LINE_CHARS
    from keras_makemore.data.streaming import StreamedCorpus

    path = tmp_path / "long.txt"
    with open(path, "w") as f:  # 4 MB without a newline: over the limit whatever its characters
        f.write("emma\n" * 1000 + "b" * (4 * MAX_LINE_CHARS + 5) + "\nava\n")
    with pytest.raises(UserError, match=f"line 1,001 has {4 * MAX_LINE_CHARS + 5:,} characters, over the limit"):
        StreamedCorpus(path, 3, chunk_bytes=1 << 16)
    path.write_text("emma\n" * 1000 + "b" * (MAX_LINE_CHARS + 1) + "\nava\n" * 1000)
    with pytest.raises(UserError, match=f"line 1,001 has {MAX_LINE_CHARS + 1:,} characters, over the limit"):
        StreamedCorpus(path, 3, chunk_bytes=1 << 16)


def test_a_vocabulary_over_the_limit_is_refused_in_one_line(tmp_path, capsys):
    from keras_makemore.data.vocabulary import MAX_VOCAB_SIZE

    path = tmp_path / "everything.txt"
    chars = [chr(c) for c in range(0x21, 0x110000) if not 0xD800 <= c < 0xE000 and not chr(c).isspace()]
    chars = chars[:MAX_VOCAB_SIZE]  # with the marker, one token over the limit
    path.write_text("\n".join("".join(chars[i:i + 100]) for i in range(0, len(chars), 100)) + "\n")
    out = tmp_path / "run"
    line = _main_error(capsys, "train", "--data", str(path), "--out", str(out), "--hidden", "8", "--steps", "20",
                       "--quiet")
    assert line == (f"--data file {path} has {len(chars):,} distinct characters, over the 131,071 a model's "
                    "vocabulary holds (each costs an output row and a logit per example in every pass): use text of "
                    "fewer distinct characters")
    assert not out.exists()


def test_a_large_vocabulary_is_evaluated_scored_and_sampled_in_bounded_batches(monkeypatch):
    """Each graph call holds at most 2^24 logits (64 MB): 16,384 examples of 70,000 tokens held 4.6 GB."""
    from keras_makemore.analysis import evaluation
    from keras_makemore.data import vocabulary
    from keras_makemore.sampling import scoring

    assert vocabulary.examples_per_call(evaluation.EVAL_BATCH_SIZE, 27) == evaluation.EVAL_BATCH_SIZE  # unchanged
    assert vocabulary.examples_per_call(scoring._CHUNK_TOKENS, 128) == scoring._CHUNK_TOKENS
    assert vocabulary.examples_per_call(evaluation.EVAL_BATCH_SIZE, 70_001) * 70_001 <= vocabulary.MAX_LOGITS_PER_CALL
    words = ["ab"] * 1000
    chunks = list(scoring._chunks_by_tokens(words, vocabulary.examples_per_call(scoring._CHUNK_TOKENS, 70_001)))
    assert max(stop - start for start, stop in chunks) * 3 * 70_001 <= vocabulary.MAX_LOGITS_PER_CALL
    assert chunks[0][0] == 0 and chunks[-1][1] == 1000


@pytest.mark.parametrize("model", ["bow", "rnn", "gru", "transformer"])
def test_a_word_over_the_word_models_limit_is_refused_before_building(tmp_path, capsys, words_path, model):
    from keras_makemore.models import get_model_type
    from keras_makemore.models.base import MAX_WORD_LENGTH, block_size_for

    data = tmp_path / "long.txt"
    data.write_text(words_path.read_text() + "\n" + "x" * (MAX_WORD_LENGTH + 1) + "\nemma\n")
    number = data.read_text().split("\n").index("x" * (MAX_WORD_LENGTH + 1)) + 1
    out = tmp_path / "run"
    line = _main_error(capsys, "train", "--model", model, "--data", str(data), "--out", str(out), "--steps", "20",
                       "--quiet")
    assert line == (f"model {model} sees whole words, and line {number:,} of {data} has 65 characters, over the "
                    "limit of 64 a word model trains on: remove the long lines, or use a window model (mlp, bigram, wavenet)")
    assert not out.exists()
    assert block_size_for(get_model_type(model), 3, MAX_WORD_LENGTH) == MAX_WORD_LENGTH + 1  # the limit itself


def test_words_cannot_drive_the_terminal(tmp_path, capsys, words_path):
    """Escape sequences and other controls in the training data come back escaped, visibly; JSON stays JSON."""
    import re

    from keras_makemore.cli import main
    from keras_makemore.sampling.words import printable, printable_json
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import train

    data = tmp_path / "escapes.txt"
    words = words_path.read_text().split()
    data.write_text("".join(f"\x1b[31m{w}\x07\x9b2J\u202e\n" for w in words))
    run = tmp_path / "run"
    train(TrainConfig(data=str(data), embed_dim=4, hidden_units=16, batch_size=32, steps=300, eval_every=300,
                      optimizer="adam", lr=0.01), run, verbose=0, num_samples=0)
    controls = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # all but the newline
    assert main(["sample", str(run), "-n", "30", "--seed", "1"]) == 0
    plain = capsys.readouterr().out
    assert not controls.search(plain) and "\\x1b" in plain, plain
    assert main(["sample", str(run), "-n", "30", "--seed", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert not controls.search(out)
    samples = json.loads(out)["samples"]
    assert "".join(printable(w) + "\n" for w in samples) == plain  # the same words, escaped
    assert any("\x1b" in w for w in samples)  # the words themselves are unchanged
    assert main(["score", str(run), "--json", "\x1b[31mava\x07"]) == 0
    out = capsys.readouterr().out
    assert not controls.search(out) and json.loads(out)["words"][0]["word"] == "\x1b[31mava\x07"
    assert json.loads(printable_json({"w": "a\\\x9b\u202eb"})) == {"w": "a\\\x9b\u202eb"}
    from keras_makemore.analysis.report import write_report

    report = write_report(run, num_samples=30, seed=1).read_text()  # a file a user may cat
    assert not controls.search(report) and "\\x1b" in report
    assert printable("a\x9bb\u202ec\x7f") == "a\\x9bb\\u202ec\\x7f"


def test_a_transformer_on_a_large_vocabulary_evaluates_in_bounded_batches():
    """A tiny Transformer on 70,000 CJK characters: each validation batch holds at most 2^24 logits (the
    16,384 positions of one batch held 4.6 GB, and ended in a traceback in `summed_nll`)."""
    from keras_makemore.analysis.evaluation import SplitNLL
    from keras_makemore.data.corpus import Corpus
    from keras_makemore.data.vocabulary import MAX_LOGITS_PER_CALL
    from keras_makemore.models import get_model_type
    from keras_makemore.models.base import block_size_for
    from keras_makemore.training.config import TrainConfig

    chars = [chr(c) for c in [*range(0x3400, 0x4DC0), *range(0x4E00, 0xA000), *range(0x20000, 0x2A6E0)]][:70_000]
    words = ["".join(chars[i:i + 10]) for i in range(0, len(chars), 10)]
    config = TrainConfig(model="transformer", embed_dim=4, hidden_units=4, layers=1, heads=1)
    corpus = Corpus(words, block_size_for(get_model_type(config.model), config.block_size, 10))
    model = get_model_type("transformer").build(config, corpus.vocab.size, corpus.block_size)
    val = SplitNLL(model, corpus, "val")
    assert all(inputs.shape[0] * inputs.shape[1] * corpus.vocab.size <= MAX_LOGITS_PER_CALL
               for inputs, _ in val._batches)
    loss = val()
    assert corpus.vocab.size == 70_001
    assert 0 < loss.nll < 2 * np.log(corpus.vocab.size) and loss.examples == corpus.split_size("val") * 11


TINY = ("--steps", "40", "--eval-every", "20", "--hidden", "8", "--embed-dim", "2", "--quiet")


def _cli_error(capsys, *args) -> str:
    """Run the CLI in-process; it must fail with exit code 2 and exactly one line on stderr."""
    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {
        "empty": b"",
        "blank": b"\n   \n\t\n",
        "binary": bytes(range(256)),
        "latin1": "café\nnaïve\n".encode("latin-1"),
        "few": b"ab\ncd\nef\n",
    }
    for name, content in files.items():
        (d / name).write_bytes(content)
    return d


@pytest.mark.parametrize("name, expected", [
    ("missing", "not found"),
    ("empty", "has no words"),
    ("blank", "has no words"),
    ("binary", "looks binary"),
    ("latin1", "not UTF-8"),
    ("few", "at least 6 words"),
])
def test_bad_data_files(capsys, tmp_path, bad_files, name, expected):
    line = _cli_error(capsys, "train", "--data", str(bad_files / name), "--out", str(tmp_path / "r"), *TINY)
    assert expected in line


@pytest.mark.parametrize("flags, expected", [
    (("--block-size", "0"), "error: --block-size must be at least 1, got 0"),
    (("--block-size", "100000"), "error: --block-size must be at most 1024"),
    (("--hidden-units", "1000000000"), "error: --hidden-units 1000000000 with embed_dim 2 and block_size 3 would make"),
    (("--lr", "-1"), "error: --lr must be a positive number, got -1.0"),
])
def test_absurd_sizes(capsys, tmp_path, words_path, flags, expected):
    line = _cli_error(capsys, "train", "--data", str(words_path), "--out", str(tmp_path / "r"), *TINY, *flags)
    assert expected in line


def test_unwritable_output_directory(capsys, tmp_path, words_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = _cli_error(capsys, "train", "--data", str(words_path), "--out", str(blocker / "run"), *TINY)
    assert f"error: --out {blocker / 'run'} cannot be written: Not a directory; choose another --out" in line


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, words_path):
    run_dir = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", "--data", str(words_path), "--out", str(run_dir), *TINY]) == 0
    return run_dir


def _copy_run(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_run_directory_problems(capsys, tmp_path, good_run):
    assert "not found" in _cli_error(capsys, "sample", str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "holds no trained model" in _cli_error(capsys, "evaluate", str(tmp_path / "empty"))
    assert "not in the vocabulary" in _cli_error(capsys, "sample", str(good_run), "--prefix", "Ω")
    assert "temperature" in _cli_error(capsys, "sample", str(good_run), "--temperature", "0")


def test_corrupt_artifacts(capsys, tmp_path, good_run):
    broken = _copy_run(good_run, tmp_path / "broken-model")
    (broken / "model.keras").write_bytes(os.urandom(2000))
    assert "corrupt" in _cli_error(capsys, "sample", str(broken))

    truncated = _copy_run(good_run, tmp_path / "truncated-model")
    data = (truncated / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    assert "corrupt" in _cli_error(capsys, "sample", str(truncated))

    bad_vocab = _copy_run(good_run, tmp_path / "bad-vocab")
    (bad_vocab / "vocab.json").write_text('{"chars": [')
    assert "vocabulary file" in _cli_error(capsys, "sample", str(bad_vocab))

    mismatch = _copy_run(good_run, tmp_path / "mismatch")
    Vocabulary(list("abc")).save(mismatch / "vocab.json")
    assert "different runs" in _cli_error(capsys, "evaluate", str(mismatch))

    bad_config = _copy_run(good_run, tmp_path / "bad-config")
    (bad_config / "config.json").write_text("{not json")
    assert "corrupt" in _cli_error(capsys, "sample", str(bad_config))


def test_resume_problems(capsys, tmp_path, good_run):
    assert "already finished" in _cli_error(capsys, "train", "--resume", str(good_run))
    assert "no run to resume" in _cli_error(capsys, "train", "--resume", str(tmp_path))
    assert "already holds a run" in _cli_error(capsys, "train", "--data", "x", "--out", str(good_run))


@pytest.mark.slow
def test_errors_in_a_real_subprocess_have_no_traceback(tmp_path, bad_files):
    result = run_cli("train", "--data", str(bad_files / "binary"), "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "looks binary" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_kill_9_then_resume_reaches_the_uninterrupted_result(tmp_path, words_path):
    args = ["--data", str(words_path), "--steps", "6000", "--eval-every", "300", "--optimizer", "adam",
            "--lr", "0.01", "--hidden", "32", "--embed-dim", "4", "--seed", "5", "--quiet", "--samples", "0"]
    run_dir = tmp_path / "killed"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "keras_makemore", "train", "--out", str(run_dir), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = run_dir / "history.csv"
    deadline = time.monotonic() + 240
    while not (history.exists() and len(history.read_text().splitlines()) >= 4):  # header + 3 epochs
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / "backup").is_dir() and not (run_dir / "history.json").exists()
    # Whatever the kill interrupted, every artifact on disk is whole.
    json.loads((run_dir / "config.json").read_text())
    Vocabulary.load(run_dir / "vocab.json")
    keras.saving.load_model(run_dir / "model.keras")
    assert not [f for f in os.listdir(run_dir) if ".tmp" in f]

    resumed = run_cli("train", "--resume", str(run_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert not (run_dir / "backup").exists()

    reference = run_cli("train", "--out", str(tmp_path / "reference"), *args)
    assert reference.returncode == 0, reference.stderr
    got = json.loads((run_dir / "history.json").read_text())
    want = json.loads((tmp_path / "reference" / "history.json").read_text())
    assert got["epoch"] == list(range(20))
    assert round(got["val_loss"][-1], 3) == round(want["val_loss"][-1], 3)
    np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-6)


def test_nan_stops_training_and_keeps_the_best_checkpoint(tmp_path, words_path):
    config = TrainConfig(data=str(words_path), steps=900, eval_every=300, hidden_units=16, embed_dim=3,
                         lr=0.1, lr_drops=[(301, 1e38)], seed=1)  # overflows the weights
    run_dir = tmp_path / "nan"
    with pytest.raises(UserError, match="lr 0.1 made training diverge: the loss became nan .*lower it"):
        train(config, run_dir, verbose=0)
    rows = (run_dir / "history.csv").read_text().splitlines()
    first_val = float(rows[1].split(",")[2])
    assert math.isfinite(first_val)
    model = keras.saving.load_model(run_dir / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "artifact.json"
    atomic.write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text('{"version": 2, "half')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["artifact.json"]


def test_training_leaves_no_temporary_files(good_run):
    assert sorted(os.listdir(good_run)) == ["config.json", "history.csv", "history.json", "model.keras", "vocab.json"]


def test_a_one_megabyte_line_and_ten_thousand_characters(tmp_path):
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghij"))
    long_word = "".join(rng.choice(letters, 1_000_000))
    cjk = [chr(0x4E00 + i) for i in range(10_000)]
    words = ["".join(cjk[i:i + 5]) for i in range(0, 10_000, 5)] + [long_word]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(words), encoding="utf-8")
    config = TrainConfig(data=str(path), steps=20, eval_every=20, hidden_units=8, embed_dim=2, seed=0)
    result = train(config, tmp_path / "run", verbose=0)
    assert result.corpus.vocab.size == 10_011
    assert result.model.output_shape == (None, 10_011)
    assert main(["sample", str(tmp_path / "run"), "-n", "3", "--seed", "0"]) == 0
