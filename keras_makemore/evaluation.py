"""Losses per split and what the train/val gap says about the fit."""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.data import SPLIT_NAMES, Corpus
from keras_makemore.models.base import next_token_logits

# Relative train/val gaps that separate the verdicts; see `fit_verdict`.
UNDERFIT_GAP = 0.01
OVERFIT_GAP = 0.05


@dataclasses.dataclass(frozen=True)
class SplitLoss:
    """The model's loss on one split.

    `nll` is the mean negative log-likelihood per token in nats (the end
    marker counts as a token), `perplexity` is `exp(nll)` and `bits_per_char`
    is `nll / ln 2`.
    """

    nll: float
    examples: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def bits_per_char(self) -> float:
        return self.nll / math.log(2)

    def to_json(self) -> dict:
        return {"nll": self.nll, "perplexity": self.perplexity,
                "bits_per_char": self.bits_per_char, "examples": self.examples}


def mean_nll(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood of `y` given contexts `x` (windows of the last tokens), in nats."""
    logits_fn = next_token_logits(model)
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = logits_fn(x[start:start + batch_size])
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(y[start:start + batch_size], logits)
        total += float(tf.reduce_sum(tf.cast(losses, tf.float64)))
    return total / max(1, len(x))


def evaluate_splits(model: keras.Model, corpus: Corpus, splits=SPLIT_NAMES) -> dict[str, SplitLoss]:
    """`SplitLoss` of `model` on each named split of `corpus`."""
    out = {}
    for name in splits:
        x, y = corpus.examples(name)
        out[name] = SplitLoss(mean_nll(model, x, y), len(x))
    return out


def fit_verdict(train_loss: float, val_loss: float) -> str:
    """One line on under- or overfitting, read from the relative train/val gap."""
    gap = (val_loss - train_loss) / train_loss
    if gap < UNDERFIT_GAP:
        side = "above" if gap >= 0 else "below"
        return (f"underfitting: val is only {abs(gap):.1%} {side} train; "
                "the network has room to grow (more hidden units, a larger embedding, longer training)")
    if gap > OVERFIT_GAP:
        return (f"overfitting: train is {gap:.1%} below val; "
                "use more data, a smaller network or stronger regularisation")
    return f"balanced: val is {gap:.1%} above train; grow the network a little and watch val"
