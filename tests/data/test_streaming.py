"""Big corpora: streamed from disk, split by hash, evaluated in streams, validated on a capped sample."""

import json
import os

import numpy as np
import pytest

from keras_makemore.analysis.evaluation import evaluate_splits, mean_nll
from keras_makemore.data import streaming
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import read_words
from keras_makemore.data.split import SPLIT_NAMES
from keras_makemore.data.streaming import StreamedCorpus, open_corpus
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.models.mlp import build_model
from keras_makemore.training.config import TrainConfig


@pytest.fixture(scope="module")
def many_words(tmp_path_factory, names_path):
    """2,000 names, in a file of about 13 KB: several chunks of 3 KB."""
    path = tmp_path_factory.mktemp("big") / "words.txt"
    path.write_text("\n".join(read_words(names_path)[:2000]) + "\n", encoding="utf-8")
    return path


def test_streamed_split_and_examples_equal_the_in_memory_hash_split(monkeypatch, many_words):
    streamed = StreamedCorpus(many_words, 3, seed=4, chunk_bytes=3000)
    assert len(streamed.chunks) > 3
    monkeypatch.setattr("keras_makemore.data.corpus.LECTURE_SPLIT_MAX_WORDS", 100)
    whole = Corpus.from_file(many_words, 3, seed=4)
    assert whole.split_rule == streamed.split_rule == "hash"
    assert streamed.vocab == whole.vocab and streamed.max_word_length == whole.max_word_length
    assert streamed.split == whole.split
    for name in SPLIT_NAMES:
        assert streamed.split_size(name) == whole.split_size(name)
        stream = streamed.windows(name)
        assert len(stream) == len(whole.windows(name))
        ids = np.concatenate([w.ids[3:] for w in stream.chunks()])
        assert np.array_equal(ids, whole.windows(name).ids[3:])
    sample = whole.split.val[:3] + whole.split.train[:2] + ["qqq"]
    assert streamed.known(sample, "val") == whole.known(sample, "val") == sample[:3]


def test_streamed_split_does_not_depend_on_the_chunk_size(many_words):
    small, large = StreamedCorpus(many_words, 3, chunk_bytes=1000), StreamedCorpus(many_words, 3)
    assert len(large.chunks) == 1 and len(small.chunks) > 10
    assert small.split == large.split


def test_streamed_minibatches_resume_exactly_and_cover_the_chunks(many_words):
    stream = StreamedCorpus(many_words, 3, chunk_bytes=3000).windows("train")
    whole = [(x.numpy(), y.numpy()) for x, y in stream.random_minibatches(8, seed=1, steps=300)]
    resumed = [(x.numpy(), y.numpy()) for x, y in stream.random_minibatches(8, seed=1, steps=300, first_step=131)]
    assert len(whole) == 300 and len(resumed) == 169
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(whole[131:], resumed))
    assert whole[0][0].shape == (8, 3) and whole[0][0].dtype == np.int32
    # A pass is one step per batch of examples, chunks in proportion to their examples.
    seen = np.concatenate([y for _, y in stream.random_minibatches(8, seed=1, steps=len(stream) // 8)])
    words = StreamedCorpus(many_words, 3).split_size("train")
    assert (seen == 0).mean() == pytest.approx(words / len(stream), rel=0.15)
    again = [y.numpy() for _, y in stream.random_minibatches(8, seed=2, steps=300)]
    assert not all(np.array_equal(a, b[1]) for a, b in zip(again, whole))


def test_evaluation_streams_and_counts_pairs_exactly(many_words):
    corpus = Corpus.from_file(many_words, 3)
    streamed = StreamedCorpus(many_words, 3, chunk_bytes=3000)
    model = build_model(corpus.vocab.size, 3, 4, 16, seed=0)
    x, y = corpus.examples("val")
    exact = mean_nll(model, x, y, batch_size=100)
    # Distinct pairs counted (block 3), every example streamed (max_examples above the count): the same mean.
    assert mean_nll(model, corpus.windows("val")) == pytest.approx(exact, rel=1e-9)
    assert mean_nll(model, corpus.windows("val"), max_examples=10**9, batch_size=64) == pytest.approx(exact, rel=1e-9)
    losses = evaluate_splits(model, streamed, batch_size=64)
    assert {k: v.examples for k, v in losses.items()} == {k: len(streamed.windows(k)) for k in SPLIT_NAMES}
    model8 = build_model(corpus.vocab.size, 8, 4, 16, seed=0)  # 27**9 pairs: streamed
    corpus8 = Corpus.from_file(many_words, 8)
    assert mean_nll(model8, corpus8.windows("val")) == pytest.approx(
        mean_nll(model8, *corpus8.examples("val")), rel=1e-9)


def test_capped_validation_reads_examples_spread_over_the_split(many_words):
    corpus = Corpus.from_file(many_words, 3)
    model = build_model(corpus.vocab.size, 3, 4, 16, seed=0)
    x, y = corpus.examples("val")
    picked = np.arange(50) * len(x) // 50
    assert mean_nll(model, corpus.windows("val"), max_examples=50) == pytest.approx(
        mean_nll(model, x[picked], y[picked]), rel=1e-9)
    stream = StreamedCorpus(many_words, 3, chunk_bytes=3000).windows("val")
    read = sum(len(b[1]) for b in stream.batches(16, max_examples=50))
    assert abs(read - 50) <= len(StreamedCorpus(many_words, 3, chunk_bytes=3000).chunks)


def test_progress_bar_counts_examples(capsys, many_words):
    corpus = Corpus.from_file(many_words, 3)
    evaluate_splits(build_model(corpus.vocab.size, 3, 4, 16, seed=0), corpus, ("val",), progress=True)
    assert f"{len(corpus.windows('val'))}/{len(corpus.windows('val'))}" in capsys.readouterr().out


def test_open_corpus_streams_above_the_threshold(monkeypatch, many_words):
    assert streaming.stream_threshold_bytes() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 32
    assert isinstance(open_corpus(many_words, 3), Corpus)
    assert isinstance(open_corpus(many_words, 3, stream=True), StreamedCorpus)
    monkeypatch.setattr(streaming, "stream_threshold_bytes", lambda: 1000)
    assert isinstance(open_corpus(many_words, 3), StreamedCorpus)


def test_streamed_errors_are_clear(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"emma\nava\n")
    with pytest.raises(UserError, match="too few"):
        StreamedCorpus(path, 3)
    path.write_bytes(b"")
    with pytest.raises(UserError, match="no words"):
        StreamedCorpus(path, 3)
    path.write_bytes(b"emma\n" * 10 + b"caf\xe9\n")
    with pytest.raises(UserError, match="not UTF-8 text .* at offset 53"):
        StreamedCorpus(path, 3, chunk_bytes=20)
    names = [f"n{chr(97 + i % 26)}{i}" for i in range(200)]
    path.write_text("\n".join(names + ["zoë"]), encoding="utf-8")
    corpus = StreamedCorpus(path, 3, vocab=Vocabulary.from_words(names))
    with pytest.raises(UserError, match="'ë' of the data is not in the vocabulary"):
        for name in SPLIT_NAMES:
            list(corpus.windows(name).chunks())


@pytest.mark.slow
def test_training_on_a_streamed_corpus_with_capped_validation(monkeypatch, tmp_path, many_words):
    from keras_makemore.training.recipe import train

    monkeypatch.setattr(streaming, "stream_threshold_bytes", lambda: 1000)
    monkeypatch.setattr(streaming, "STREAM_CHUNK_BYTES", 4000)
    config = TrainConfig(data=str(many_words), block_size=3, embed_dim=4, hidden_units=16, batch_size=16,
                         steps=400, eval_every=200, optimizer="adam", lr=0.01, seed=3, eval_max_examples=300)
    result = train(config, tmp_path / "run", verbose=0)
    assert isinstance(result.corpus, StreamedCorpus)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["val_loss"]) == 2 and history["loss"][-1] < history["loss"][0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["eval_max_examples"] == 300
    best = mean_nll(result.model, result.corpus.windows("val"), max_examples=300)
    assert best == pytest.approx(min(history["val_loss"]), abs=1e-4)


@pytest.mark.slow
def test_capped_validation_in_memory(tmp_path, many_words):
    from keras_makemore.training.recipe import train

    config = TrainConfig(data=str(many_words), block_size=3, embed_dim=4, hidden_units=16, batch_size=16,
                         steps=400, eval_every=200, optimizer="adam", lr=0.01, seed=3, eval_max_examples=100)
    result = train(config, tmp_path / "run", verbose=0)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert mean_nll(result.model, result.corpus.windows("val"), max_examples=100) == pytest.approx(
        min(history["val_loss"]), abs=1e-4)


@pytest.fixture
def forced_stream(monkeypatch):
    """Every data file streams, and reading a streamed file's whole word list fails the test."""
    monkeypatch.setattr(streaming, "stream_threshold_bytes", lambda: 1000)

    def whole_list(self):
        raise AssertionError("the whole word list of a streamed file was read into memory")

    monkeypatch.setattr(StreamedCorpus, "split", property(whole_list))


@pytest.fixture(scope="module")
def streamed_run(tmp_path_factory, many_words):
    from keras_makemore.cli import main

    run = tmp_path_factory.mktemp("streamed") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(streaming, "stream_threshold_bytes", lambda: 1000)
        assert main(["train", "--data", str(many_words), "--out", str(run), "--steps", "40", "--eval-every", "20",
                     "--hidden", "8", "--embed-dim", "2", "--quiet", "--samples", "0"]) == 0
    return run


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "evaluate", "plot", "report", "sample", "score", "tune"])
def test_every_command_takes_a_run_whose_data_is_streamed(forced_stream, streamed_run, many_words, tmp_path,
                                                          capsys, command):
    from keras_makemore.cli import main

    run = str(streamed_run)
    args = {"export": ["export", run, "--json"], "evaluate": ["evaluate", run, "--json"],
            "plot": ["plot", run, "--out", str(tmp_path / "plots")], "report": ["report", run, "-n", "5"],
            "sample": ["sample", run, "-n", "3", "--seed", "1"],
            "score": ["score", run, "emma", "--file", str(many_words)],
            "tune": ["tune", "--data", str(many_words), "--out", str(tmp_path / "search"), "--tuner", "grid",
                     "--max-trials", "1", "--block-size", "3", "--embed-dim", "2", "--hidden", "8",
                     "--batch-size", "16", "--steps", "40", "--evals", "2", "--budget", "5m"]}[command]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    out, err = capsys.readouterr()
    if command == "export":
        check = json.loads(out)["val_check"]
        assert check["examples"] > 0 and check["max_abs_diff"] < 1e-4
    elif command == "evaluate":
        assert {"train", "val", "test"} <= set(json.loads(out)["losses"])
    elif command == "report":
        assert "novel" in (streamed_run / "report.md").read_text()
    elif command == "sample":
        assert len(out.split()) == 3 and "novel (not in the training words)" in err
    elif command == "score":  # the file is read a batch of lines at a time: its scores in file order
        lines = out.strip().splitlines()
        assert len(lines) == 1 + 1 + len(read_words(many_words)) and "scores come in file order" in err
        assert [line.split()[-1] for line in lines[1:]] == ["emma", *read_words(many_words)]
    elif command == "tune":
        assert (tmp_path / "search" / "best" / "model.keras").exists()


@pytest.mark.slow
def test_new_only_on_a_streamed_run_says_why_it_cannot(forced_stream, streamed_run, capsys):
    from keras_makemore.cli import main

    assert main(["sample", str(streamed_run), "-n", "3", "--new-only"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == ("keras-makemore: error: --new-only holds the training words in memory, and the run's data file "
                    f"{json.loads((streamed_run / 'config.json').read_text())['data']} is streamed from disk for its "
                    "size: leave --new-only out, or pass --exclude with a smaller list of words")


@pytest.mark.slow
def test_score_json_of_a_file_read_as_it_is_scored(forced_stream, streamed_run, many_words, capsys):
    from keras_makemore.cli import main

    assert main(["score", str(streamed_run), "--json", "--file", str(many_words)]) == 0
    scores = json.loads(capsys.readouterr().out)["words"]
    assert [s["word"] for s in scores] == read_words(many_words) and all(s["nll"] > 0 for s in scores)


@pytest.mark.slow
def test_score_of_a_big_file_names_the_line_at_fault(forced_stream, streamed_run, tmp_path, capsys):
    from keras_makemore.cli import main

    path = tmp_path / "words.txt"
    path.write_text("emma\n" * 300 + "zo\u00eb\n", encoding="utf-8")
    assert main(["score", str(streamed_run), "--file", str(path)]) == 2
    assert capsys.readouterr() == ("",
        f"keras-makemore: error: --file {path} line 301 has a character the model never saw: remove the line, or "
        "score with a model trained on such characters\n")
    path.write_text("emma\n" * 300 + "a" * 5000 + "\n", encoding="utf-8")
    assert main(["score", str(streamed_run), "--file", str(path)]) == 2
    assert capsys.readouterr() == ("",
        f"keras-makemore: error: --file {path} line 301 has more than the 4,096 characters a model scores: "
        "remove the line\n")
