"""Plots and TensorBoard logs from real short runs."""

import shutil

import keras
import numpy as np
import pytest
from conftest import assert_readable_png, run_cli

from keras_makemore.analysis.plots import plot_embeddings, plot_run, project_2d, token_labels
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import read_words
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.data.windows import make_dataset
from keras_makemore.models.mlp import build_model
from keras_makemore.training.callbacks import EmbeddingProjector


def test_token_labels_keep_the_marker_and_spaces_visible():
    assert token_labels(Vocabulary("abc")) == [".", "a", "b", "c"]
    assert token_labels(Vocabulary(["a", " ", "."])) == ["<end>", "␣", ".", "a"]


def test_pca_keeps_a_plane_exactly():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(27, 2)) @ rng.normal(size=(2, 6)) + 3.0  # 6-D points on a 2-D plane
    points, kept = project_2d(plane)
    assert kept == pytest.approx(1.0)
    distances = lambda p: np.linalg.norm(p[:, None] - p[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(points), distances(plane), atol=1e-9)
    flat = rng.normal(size=(5, 2))
    np.testing.assert_array_equal(project_2d(flat)[0], flat)


def test_plot_run_draws_both_figures(trained_run, tmp_path):
    embeddings, loss = plot_run(trained_run.run_dir, tmp_path)
    assert (embeddings.name, loss.name) == ("embeddings.png", "loss.png")
    assert "4-D embeddings projected by PCA" in assert_readable_png(embeddings)["Title"]
    assert "Loss of run" in assert_readable_png(loss)["Title"]


def test_two_dimensional_embeddings_are_drawn_as_they_are(tmp_path):
    vocab = Vocabulary("abcdefghijklmnopqrstuvwxyz")
    table = np.random.default_rng(1).normal(size=(vocab.size, 2))
    title = assert_readable_png(plot_embeddings(table, vocab, tmp_path / "e.png"))["Title"]
    assert "2-D embedding vectors as they are" in title and "PCA" not in title


@pytest.mark.slow
def test_plot_cli_and_its_errors(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    result = run_cli("plot", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(run_dir / "embeddings.png"), str(run_dir / "loss.png")]
    missing = run_cli("plot", str(tmp_path / "nothing-here"))
    assert missing.returncode == 2 and missing.stderr.startswith(f"keras-makemore: error: RUN_DIR {tmp_path / 'nothing-here'} not found")


def _scalars(log_dir):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0}).Reload()
    return {tag: [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


@pytest.mark.slow
def test_train_tensorboard_logs_scalars_and_the_projector(tmp_path, words_path):
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(words_path), "--out", str(run_dir), "--steps", "400", "--eval-every", "200",
                     "--hidden", "16", "--embed-dim", "3", "--optimizer", "adam", "--lr", "0.01", "--lr-schedule", "step", "--quiet",
                     "--tensorboard")
    assert result.returncode == 0, result.stderr
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in result.stdout
    log_dir = run_dir / "tensorboard"
    history = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
    train, val = _scalars(log_dir / "train"), _scalars(log_dir / "validation")
    np.testing.assert_allclose(train["epoch_loss"], history["loss"], rtol=1e-6)
    np.testing.assert_allclose(val["epoch_loss"], history["val_loss"], rtol=1e-6)
    # the step schedule: 0.01, then 0.001 from step 200 (the end of the first interval) on
    np.testing.assert_allclose(train["epoch_learning_rate"], [0.001, 0.001], rtol=1e-6)

    config = text_format.Parse((log_dir / "projector_config.pbtxt").read_text(), projector.ProjectorConfig())
    (embedding,) = config.embeddings
    labels = (log_dir / embedding.metadata_path).read_text(encoding="utf-8").splitlines()
    assert labels == token_labels(Vocabulary.load(run_dir / "vocab.json"))
    vectors = np.loadtxt(log_dir / embedding.tensor_path, delimiter="\t")
    assert vectors.shape == (len(labels), 3)


def test_embedding_projector_writes_the_current_table_in_a_users_fit(tmp_path, words_path):
    corpus = Corpus(read_words(words_path), block_size=2)
    model = build_model(corpus.vocab.size, 2, 2, 8)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(make_dataset(*corpus.examples("train"), batch_size=32, seed=0), epochs=2, verbose=0, shuffle=False,
              callbacks=[EmbeddingProjector(tmp_path, corpus.vocab)])
    written = np.loadtxt(tmp_path / "embeddings.tsv", delimiter="\t")
    np.testing.assert_allclose(written, model.get_layer("embedding").get_weights()[0], rtol=1e-6)
    assert len((tmp_path / "metadata.tsv").read_text(encoding="utf-8").splitlines()) == corpus.vocab.size
