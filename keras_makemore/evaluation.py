"""Losses per split and what the train/val gap says about the fit."""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.data import SPLIT_NAMES, Corpus, Windows

# Relative train/val gaps that separate the verdicts; see `fit_verdict`.
UNDERFIT_GAP = 0.01
OVERFIT_GAP = 0.05
# Examples per forward pass when evaluating: large enough that per-batch overhead vanishes, small enough
# that the lecture MLP's activations (hidden 200, 27 logits, float32) stay near 16 MB.
EVAL_BATCH_SIZE = 16_384
_MAX_PAIRS = 1 << 24  # counters of `_distinct_examples`: 128 MB
_COUNT_CHUNK = 1 << 22  # examples counted at once: 16 bytes each for block 3


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


def mean_nll(model: keras.Model, x: np.ndarray | Windows, y: np.ndarray | None = None,
             batch_size: int = EVAL_BATCH_SIZE, max_examples: int | None = None, progress: bool = False) -> float:
    """Mean negative log-likelihood of the next tokens given their contexts, in nats.

    Args:
        model: maps contexts to next-token logits.
        x, y: the examples as arrays (`build_examples`), or `x` the `Windows`
            of a split and `y` `None`: then the batches are cut from the flat
            ids as they stream, never stored whole.
        batch_size: examples per forward pass.
        max_examples: with `Windows`, read only this many, spread evenly (`Windows.batches`).
        progress: show a progress bar of the examples read.

    Example:

    >>> from keras_makemore.data import Corpus
    >>> from keras_makemore.model import build_model
    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> model = build_model(corpus.vocab.size, 3, 2, 8, seed=0)
    >>> abs(mean_nll(model, corpus.windows("val")) - mean_nll(model, *corpus.examples("val"))) < 1e-6
    True
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(x, Windows):
        count = min(len(x), max_examples or len(x))
        distinct = _distinct_examples(x) if max_examples is None else None
        batches = (x.batches(batch_size, max_examples) if distinct is None
                   else tf.data.Dataset.from_tensor_slices(distinct).batch(batch_size))
    else:
        count, batches = len(x), tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    @tf.function(reduce_retracing=True)
    def summed_nll(contexts, targets, weights=None):
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, model(contexts, training=False))
        losses = tf.cast(losses, tf.float64)
        return tf.reduce_sum(losses if weights is None else losses * weights)

    bar = keras.utils.Progbar(count, unit_name="example") if progress else None
    total, seen = 0.0, 0.0
    for contexts, targets, *weights in batches:
        total += float(summed_nll(contexts, targets, *weights))
        seen += float(tf.reduce_sum(weights[0])) if weights else len(targets)
        if bar is not None:
            bar.update(int(seen))
    return total / max(1, seen)


def _distinct_examples(windows: Windows) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The distinct `(context, next id)` pairs of `windows` and how often each occurs, or `None` if too many.

    A model's loss on an example depends on the pair alone, so the mean loss
    is the count-weighted mean over distinct pairs: names.txt with block 3 has
    15.6M examples over a 2M-line list but at most 27**4 = 531,441 pairs
    (measured 25x fewer forward passes). Counted with a bincount over the pair's
    index, which needs `vocab_size ** (block_size + 1)` counters: done up to
    `_MAX_PAIRS` of them, else the examples are streamed one by one.
    """
    size = int(windows.ids.max()) + 1
    if size ** (windows.block_size + 1) > _MAX_PAIRS:
        return None
    place = size ** np.arange(windows.block_size, -1, -1, dtype=np.int64)
    counts = np.zeros(size ** (windows.block_size + 1), dtype=np.int64)
    ids, block = windows.ids, windows.block_size
    for start in range(0, len(windows), _COUNT_CHUNK):
        stop = min(start + _COUNT_CHUNK, len(windows))
        # The pair's index, read off the flat ids as `Windows.gather` cuts them: position k of each window
        # is a slice, kept only while no marker follows it.
        pairs = ids[start + block:stop + block].astype(np.int64)
        inside = np.ones(stop - start, dtype=bool)
        for k in reversed(range(block)):
            column = ids[start + k:stop + k]
            inside &= column != 0
            pairs += np.where(inside, column, 0) * place[k]
        counts += np.bincount(pairs, minlength=len(counts))
    pairs = np.flatnonzero(counts)
    digits = (pairs[:, None] // place % size).astype(np.int32)
    return digits[:, :-1], digits[:, -1], counts[pairs].astype(np.float64)


def evaluate_splits(model: keras.Model, corpus: Corpus, splits=SPLIT_NAMES, batch_size: int = EVAL_BATCH_SIZE,
                    progress: bool = False) -> dict[str, SplitLoss]:
    """`SplitLoss` of `model` on each named split of `corpus`, over all its examples, streamed in batches."""
    out = {}
    for name in splits:
        windows = corpus.windows(name)
        out[name] = SplitLoss(mean_nll(model, windows, batch_size=batch_size, progress=progress), len(windows))
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
