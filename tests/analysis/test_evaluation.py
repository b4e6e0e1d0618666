import math

import numpy as np
import pytest

from keras_makemore.analysis.evaluation import SplitLoss, evaluate_splits, fit_verdict, mean_nll


def test_mean_nll_matches_numpy(trained_run):
    x, y = trained_run.corpus.examples("val")
    logits = trained_run.model(x).numpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(len(y)), y].mean()
    assert mean_nll(trained_run.model, x, y, batch_size=7) == pytest.approx(expected, abs=1e-5)


def test_split_losses_and_derived_figures(trained_run):
    losses = evaluate_splits(trained_run.model, trained_run.corpus)
    assert set(losses) == {"train", "val", "test"}
    train = losses["train"]
    assert train.perplexity == pytest.approx(math.exp(train.nll))
    assert train.bits_per_char == pytest.approx(train.nll / math.log(2))
    assert train.examples == len(trained_run.corpus.examples("train")[0])


def test_verdicts():
    assert fit_verdict(2.126, 2.127).startswith("underfitting")
    assert fit_verdict(1.5, 2.2).startswith("overfitting")
    assert fit_verdict(2.126, 2.170).startswith("balanced")
    assert SplitLoss(math.log(27), 1).perplexity == pytest.approx(27)
