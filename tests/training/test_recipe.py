import csv
import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from keras_makemore.analysis.evaluation import evaluate_splits, mean_nll
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import read_words
from keras_makemore.data.windows import make_dataset
from keras_makemore.errors import UserError
from keras_makemore.models.mlp import build_model
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.optimizers import make_lr_schedule
from keras_makemore.training.recipe import train
from keras_makemore.training.run import load_model


def test_run_directory_holds_everything(trained_run):
    run_dir = trained_run.run_dir
    for name in ("model.keras", "vocab.json", "config.json", "history.csv", "history.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "backup").exists()  # removed once training finished
    config = json.loads((run_dir / "config.json").read_text())
    assert config["block_size"] == 3 and config["hidden_units"] == 32 and config["vocab_size"] == trained_run.corpus.vocab.size
    assert len(config["data_sha256"]) == 64
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert trained_run.history["val_loss"] == [float(r["val_loss"]) for r in rows]


def test_training_lowers_the_loss(trained_run, small_config):
    corpus = trained_run.corpus
    x, y = corpus.examples("train")
    keras.utils.set_random_seed(small_config.seed)
    untrained = build_model(corpus.vocab.size, 3, small_config.embed_dim, small_config.hidden_units)
    before = mean_nll(untrained, x, y)
    after = mean_nll(trained_run.model, x, y)
    assert before == pytest.approx(math.log(corpus.vocab.size), abs=0.05)  # uniform guessing at the start
    assert after < before - 0.5


def test_best_checkpoint_is_the_lowest_val_loss(trained_run):
    x, y = trained_run.corpus.examples("val")
    assert mean_nll(trained_run.model, x, y) == pytest.approx(min(trained_run.history["val_loss"]), abs=1e-4)


@pytest.mark.parametrize("data, last_is_best", [("words", False), ("names", True)])
def test_the_returned_model_is_the_saved_best_one(tmp_path, small_config, words_path, names_path, data, last_is_best):
    # `train` hands back the model in memory when its last epoch was the best, else reads the saved best back.
    config = dataclasses.replace(small_config, data=str(words_path if data == "words" else names_path), steps=400,
                                 eval_every=200)
    result = train(config, tmp_path / "run", verbose=0)
    val = result.history["val_loss"]
    assert (val[-1] == min(val)) == last_is_best  # the case is the one named
    assert min(val) == evaluate_splits(result.model, result.corpus, ("val",))["val"].nll  # what `evaluate` prints
    for a, b in zip(result.model.get_weights(), load_model(tmp_path / "run" / "model.keras").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_weights(tmp_path, small_config, trained_run):
    again = train(small_config, tmp_path / "again", verbose=0)
    for a, b in zip(again.model.get_weights(), trained_run.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.history["val_loss"] == trained_run.history["val_loss"]


def test_an_existing_run_is_not_overwritten(trained_run, small_config):
    with pytest.raises(UserError, match="already holds a run"):
        train(small_config, trained_run.run_dir, verbose=0)


def test_lecture_schedule_is_expressible():
    config = TrainConfig(lr=0.1, lr_drops=[(100_000, 0.01)], steps=200_000)
    schedule = make_lr_schedule(config, 200_000)
    assert [float(schedule(s)) for s in (0, 99_999, 100_000, 199_999)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    default = make_lr_schedule(TrainConfig(), 200_000)  # the default "step" schedule is the same
    assert [float(default(s)) for s in (99_999, 100_000)] == pytest.approx([0.1, 0.01])


def test_model_works_in_a_users_own_fit(words_path):
    """The pieces compose into a plain Keras pipeline, as the README shows."""
    corpus = Corpus(read_words(words_path), block_size=3)
    x, y = corpus.examples("train")
    model = build_model(corpus.vocab.size, 3, 4, 16)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(make_dataset(x, y, batch_size=16, seed=0), epochs=3, verbose=0,
                        validation_data=make_dataset(*corpus.examples("val"), shuffle=False))
    assert history.history["loss"][-1] < history.history["loss"][0]
