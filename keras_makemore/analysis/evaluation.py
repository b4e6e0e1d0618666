"""Losses per split and what the train/val gap says about the fit."""

import dataclasses
import math
import weakref
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.data.corpus import Corpus
from keras_makemore.data.split import SPLIT_NAMES
from keras_makemore.data.streaming import StreamedCorpus, WindowStream
from keras_makemore.data.vocabulary import examples_per_call
from keras_makemore.data.windows import Windows
from keras_makemore.models.base import IGNORED
from keras_makemore.models.keras_model import is_word_model, model_type_of, next_token_logits, training_examples

# Relative train/val gaps that separate the verdicts; see `fit_verdict`.
UNDERFIT_GAP = 0.01
OVERFIT_GAP = 0.05
# Examples per forward pass when evaluating: large enough that per-batch overhead vanishes, small enough
# that the lecture MLP's activations (hidden 200, 27 logits, float32) stay near 16 MB.
EVAL_BATCH_SIZE = 16_384
_MAX_PAIRS = 1 << 24  # counters of `_distinct_examples`: 128 MB
_COUNT_CHUNK = 1 << 20  # examples counted at once: about 30 bytes each, transient
_KEPT_EXAMPLES = 1 << 20  # the most windows `SplitNLL` keeps cut: a block of 8 holds 36 MB of them


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


def mean_nll(model: keras.Model, x: np.ndarray | Windows | WindowStream, y: np.ndarray | None = None,
             batch_size: int = EVAL_BATCH_SIZE, max_examples: int | None = None, progress: bool = False) -> float:
    """Mean negative log-likelihood of the next tokens given their contexts, in nats.

    Args:
        model: maps contexts to next-token logits.
        x, y: the examples as arrays (`build_examples`), or `x` the `Windows`
            (or a streamed corpus' `WindowStream`) of a split and `y` `None`:
            then the batches are cut from the flat ids as they stream, never
            stored whole.
        batch_size: examples per forward pass.
        max_examples: with `Windows`, read only this many, spread evenly
            (`Windows.batches`); `None` reads all, counting the distinct
            `(context, next id)` pairs first when there are few possible.
        progress: show a progress bar of the examples read.

    Example:

    >>> from keras_makemore.data.corpus import Corpus
    >>> from keras_makemore.models.mlp import build_model
    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> model = build_model(corpus.vocab.size, 3, 2, 8, seed=0)
    >>> abs(mean_nll(model, corpus.windows("val")) - mean_nll(model, *corpus.examples("val"))) < 1e-6
    True
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch_size = examples_per_call(batch_size, int(model.output_shape[-1]))
    if y is None:  # `Windows`, or a streamed corpus' `WindowStream`
        count, batches = min(len(x), max_examples or len(x)), _window_batches(x, batch_size, max_examples)
    else:
        count, batches = len(x), tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return _mean_over(batches, _summed_nll(model), count, progress)


def _window_batches(windows: Windows | WindowStream, batch_size: int, max_examples: int | None) -> tf.data.Dataset:
    """Batches of `(contexts, targets)` of `windows` (all of them, or `max_examples` spread evenly), or of
    their distinct pairs and counts `(contexts, targets, weights)` when there are few possible."""
    streamed = not isinstance(windows, Windows)
    distinct = None if max_examples is not None else _distinct_examples(
        windows.chunks() if streamed else [windows],
        windows.corpus.vocab.size if streamed else int(windows.ids.max()) + 1, windows.block_size)
    if distinct is None:
        return windows.batches(batch_size, max_examples)
    return tf.data.Dataset.from_tensor_slices(distinct).batch(batch_size)


def _mean_over(batches: Iterable, summed_nll, count: int, progress: bool) -> float:
    """The mean of `summed_nll` over `batches` of `(contexts, targets[, weights])`; `count` sizes the bar."""
    bar = keras.utils.Progbar(count, unit_name="example") if progress else None
    total, seen = 0.0, 0.0
    for batch in batches:
        batch_total, batch_seen = summed_nll(*batch)
        total, seen = total + float(batch_total), seen + float(batch_seen)
        if bar is not None:
            bar.update(int(seen))
    return total / max(1.0, seen)


def _summed_nll(model: keras.Model):
    """A compiled function of `(contexts, targets[, weights])`: the (weighted) sum of the model's losses
    (float64) and the examples' count (or their weights' sum)."""
    if model not in _SUMMED_NLL:
        network = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(reduce_retracing=True, autograph=False)  # plain TensorFlow ops: no rewrite to trace
        def summed_nll(contexts, targets, weights=None):
            logits = next_token_logits(network())(contexts)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
            losses = tf.cast(losses, tf.float64)
            if weights is None:
                return tf.reduce_sum(losses), tf.cast(tf.size(targets), tf.float64)
            return tf.reduce_sum(losses * weights), tf.reduce_sum(tf.cast(weights, tf.float64))

        _SUMMED_NLL[model] = summed_nll
    return _SUMMED_NLL[model]


_SUMMED_NLL = weakref.WeakKeyDictionary()  # one traced function per model, reused by every evaluation


def _distinct_examples(parts: Iterable[Windows], size: int,
                       block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The distinct `(context, next id)` pairs of the examples of `parts` and how often each occurs, or `None`.

    A model's loss on an example depends on the pair alone, so the mean loss
    is the count-weighted mean over distinct pairs: a 2M-line list with block 3
    has 13M training examples but at most 27**4 = 531,441 pairs (measured 3x
    faster than streaming every example). Counted with a bincount over the
    pair's index, which needs `size ** (block + 1)` counters (`size` tokens):
    done up to `_MAX_PAIRS` of them; above, `None` says to stream the examples.
    """
    if size ** (block + 1) > _MAX_PAIRS:
        return None
    place = size ** np.arange(block, -1, -1, dtype=np.int64)
    counts = np.zeros(size ** (block + 1), dtype=np.int64)
    for windows in parts:
        ids = windows.ids
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


def evaluate_splits(model: keras.Model, corpus: Corpus | StreamedCorpus, splits=SPLIT_NAMES,
                    batch_size: int = EVAL_BATCH_SIZE, progress: bool = False) -> dict[str, SplitLoss]:
    """`SplitLoss` of `model` on each named split of `corpus`, over all its examples, streamed in batches.

    Example:

    >>> from keras_makemore.data.corpus import Corpus
    >>> from keras_makemore.models.mlp import build_model
    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> losses = evaluate_splits(build_model(corpus.vocab.size, 3, 2, 8, seed=0), corpus)
    >>> losses["train"].examples, round(losses["train"].nll, 1)
    (34, 2.5)
    """
    return {name: SplitNLL(model, corpus, name, batch_size)(progress) for name in splits}


class SplitNLL:
    """The mean NLL of `model` on one split of `corpus`, its batches cut once and read again at every call.

    Training validates with one at every epoch's end: with the batches made
    once (a dozen milliseconds a pass on the lecture's val split), it replaced
    Keras' `evaluate`, whose test function XLA compiled again for each run
    (0.84 s, then about 50 ms a pass, measured on 2 cores with a scratch timing
    script).

    Args:
        model: a network of this package (window or word model).
        corpus: the corpus whose split to read, in memory or streamed.
        split: `"train"`, `"val"` or `"test"`.
        batch_size: examples (windows, or words' positions) per forward pass.
        max_examples: if set, only this many examples (windows, or words for
            a word model), spread evenly over the split; `None` reads all.

    Example:

    >>> from keras_makemore.data.corpus import Corpus
    >>> from keras_makemore.models.mlp import build_model
    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> model = build_model(corpus.vocab.size, 3, 2, 8, seed=0)
    >>> val_nll = SplitNLL(model, corpus, "val")
    >>> val_nll().nll == evaluate_splits(model, corpus, ("val",))["val"].nll
    True
    """

    def __init__(self, model: keras.Model, corpus: Corpus | StreamedCorpus, split: str,
                 batch_size: int = EVAL_BATCH_SIZE, max_examples: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._network = weakref.ref(model)  # held by a callback of the model's fit: it must not keep the model alive
        batch_size = examples_per_call(batch_size, corpus.vocab.size)  # a large vocabulary's logits stay bounded
        # A word model reads each word once, every position at a time, when no word is longer than its context:
        # the same losses as one pass per window (its last `block_size` tokens), which took 12x as long on the
        # transformer preset (train and val: 62.6 s against the 36.5 s of a 200-step run).
        if (is_word_model(model) and isinstance(corpus, Corpus) and corpus.max_word_length < corpus.block_size):
            sequences = training_examples(model_type_of(model), corpus, split)
            words = sequences.batches(max(1, batch_size // corpus.block_size), max_examples)
            self._batches, self._summed_nll = list(words), _summed_word_nll  # a split's words are few: kept
            self.examples = sum(int(np.count_nonzero(targets != IGNORED)) for _, targets in self._batches)
            return
        windows = corpus.windows(split)
        self.examples, self._summed_nll = min(len(windows), max_examples or len(windows)), _summed_nll
        batches = _window_batches(windows, batch_size, max_examples)
        # Kept as tensors when in memory and small, else read again at each call: a big split is never held whole.
        small = isinstance(windows, Windows) and self.examples <= _KEPT_EXAMPLES
        self._batches = list(batches) if small else batches

    @property
    def model(self) -> keras.Model:
        return self._network()

    def __call__(self, progress: bool = False) -> SplitLoss:
        """The model's `SplitLoss` on the split now; `progress` shows a bar of the examples read."""
        return SplitLoss(_mean_over(self._batches, self._summed_nll(self.model), self.examples, progress),
                         self.examples)


def _summed_word_nll(model: keras.Model):
    """A compiled function of word rows `(inputs, targets)`: the sum of the losses of the scored positions
    (float64) and their number."""
    if model not in _SUMMED_WORD_NLL:
        network = weakref.ref(model)

        @tf.function(reduce_retracing=True, autograph=False)  # plain TensorFlow ops: no rewrite to trace
        def summed_nll(inputs, targets):
            scored = tf.not_equal(targets, IGNORED)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.where(scored, targets, 0),
                                                                    network()(inputs, training=False))
            return (tf.reduce_sum(tf.where(scored, tf.cast(losses, tf.float64), 0.0)),
                    tf.reduce_sum(tf.cast(scored, tf.int64)))

        _SUMMED_WORD_NLL[model] = summed_nll
    return _SUMMED_WORD_NLL[model]


_SUMMED_WORD_NLL = weakref.WeakKeyDictionary()


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
