"""Context windows and tf.data pipelines: what a window model trains on.

A word `emma` with `block_size=3` becomes the examples

    ... -> e      ..e -> m      .em -> m      emm -> a      mma -> .

where `.` is the start/end marker. `Windows` holds them as views into one
array of ids; `random_minibatches` draws the lecture's minibatches from them.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_makemore.data.reading import concat_ranges, pack_words
from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.errors import UserError

# Steps whose minibatches `random_minibatches` draws in one op: 2.6 us of CPU a step, against 24 us
# drawing each step's on its own (measured; a lecture-MLP step takes about 100 us).
_DRAW_BLOCK = 100


def build_examples(
    words: Sequence[str], vocab: Vocabulary, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Context windows and next tokens: `x` int32 `[n, block_size]`, `y` int32 `[n]`.

    Every word yields `len(word) + 1` examples: one for each character and one
    for the end marker; contexts before the word's start are marker-padded.
    This is `Windows.from_words(words, vocab, block_size).numpy()`; training
    uses the `Windows` themselves, which take `block_size` times less memory.
    """
    return Windows.from_words(words, vocab, block_size).numpy()


class Windows:
    """The examples of a list of words, as windows into one flat array of token ids.

    `ids` holds `block_size` markers, then each word's ids followed by one end
    marker. Example `i` predicts `ids[i + block_size]` from the window
    `ids[i:i + block_size]` with every id up to the window's last marker set
    to the marker: that is the word's own, marker-padded context. The windows
    are cut per minibatch (`gather`), so the examples take one id per
    character, however long the context, where `build_examples` stores
    `block_size + 1` int32 per character. Sequence models read the same array
    per word: word `k` is the ids between its markers.

    Args:
        ids: the flat ids, laid out as above (`uint8` for up to 256 tokens).
        block_size: characters of context.

    Example:

    >>> vocab = Vocabulary.from_words(["emma"])
    >>> windows = Windows.from_words(["emma"], vocab, 3)
    >>> windows.ids.tolist(), len(windows)
    ([0, 0, 0, 2, 3, 3, 1, 0], 5)
    >>> x, y = windows.numpy()
    >>> x[3].tolist(), int(y[3])
    ([2, 3, 3], 1)
    """

    def __init__(self, ids: np.ndarray, block_size: int):
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        if len(ids) <= block_size or (ids[:block_size] != MARKER_ID).any() or ids[-1] != MARKER_ID:
            raise ValueError(f"ids must be {block_size} markers, then words each ending in a marker; "
                             f"got {len(ids)} ids")
        if len(ids) - block_size >= 2**31:
            raise UserError(f"a split of {len(ids) - block_size:,} examples is over the 2**31 a pipeline indexes: "
                            "split the data file in parts", argument="data")
        self.ids = ids
        self.block_size = block_size
        self._tensor = None

    @classmethod
    def from_words(cls, words: Sequence[str], vocab: "Vocabulary", block_size: int) -> "Windows":
        chars, offsets = pack_words(words)
        return cls(flat_ids(chars, offsets, np.arange(len(words)), vocab, block_size), block_size)

    def __len__(self) -> int:
        return len(self.ids) - self.block_size

    def __repr__(self) -> str:
        return f"Windows({len(self):,} examples, block_size={self.block_size})"

    def gather(self, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Contexts int32 `[..., block_size]` and next ids int32 `[...]` of the examples at `indices` (int32)."""
        if self._tensor is None:
            with tf.init_scope():  # made once, eagerly, even when first asked for inside a tf.data function
                self._tensor = tf.constant(self.ids)
        window = tf.gather(self._tensor, indices[..., None] + tf.range(self.block_size))
        # Keep an id only if no marker follows it in the window: the ids before a word's start are another word's.
        inside = tf.math.cumprod(tf.cast(window != MARKER_ID, tf.int32), axis=-1, reverse=True)
        target = tf.gather(self._tensor, indices + self.block_size)
        return tf.cast(window, tf.int32) * inside, tf.cast(target, tf.int32)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples as arrays, `x` int32 `[n, block_size]` and `y` int32 `[n]`, as `build_examples` returns them."""
        x, y = self.gather(tf.range(len(self), dtype=tf.int32))
        return x.numpy(), y.numpy()

    def batches(self, batch_size: int, max_examples: int | None = None) -> tf.data.Dataset:
        """`(contexts, next_ids)` minibatches of the examples in order, for evaluation.

        Args:
            batch_size: examples per minibatch (the last may be smaller).
            max_examples: if set, only this many examples, spread evenly over all
                (example `i * len // max_examples` for each i): a quick estimate.
        """
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
        if max_examples is not None and max_examples < 1:
            raise UserError(f"max_examples must be at least 1, got {max_examples}", argument="max_examples")
        total = len(self)
        count = total if max_examples is None else min(total, max_examples)

        def batch(start):
            indices = tf.range(start, tf.minimum(start + batch_size, count))
            if count < total:
                indices = indices * total // count
            return self.gather(tf.cast(indices, tf.int32))

        return tf.data.Dataset.range(0, count, batch_size).map(batch).prefetch(tf.data.AUTOTUNE)

    def random_minibatches(self, batch_size: int, seed: int, steps: int, first_step: int = 0) -> tf.data.Dataset:
        """The lecture's minibatches of these examples; see the module function `random_minibatches`."""
        return _random_minibatches(len(self), self.gather, batch_size, seed, steps, first_step)


def flat_ids(chars: np.ndarray, offsets: np.ndarray, words: np.ndarray, vocab: "Vocabulary",
             block_size: int) -> np.ndarray:
    """The `Windows.ids` of the packed words at indices `words`, in that order.

    Args:
        chars, offsets: all words, as `pack_words` or `pack_lines` return them;
            their newlines become the end markers.
        words: indices of the words to lay out.
        vocab: the token ids of the characters.
        block_size: markers before the first word.
    """
    spans = offsets[words + 1] - offsets[words]
    if len(words) == len(offsets) - 1 and np.all(words == np.arange(len(words))):
        source = chars
    elif np.all(words[1:] > words[:-1]):
        # In file order (the hash split): select the words with a mask, 1 byte a character.
        selected = np.zeros(len(offsets) - 1, dtype=bool)
        selected[words] = True
        source = chars[np.repeat(selected, np.diff(offsets))]
    else:
        source = chars[np.repeat(offsets[words], spans) + concat_ranges(spans)]
    ids = vocab.ids_of(source)
    return np.concatenate([np.zeros(block_size, dtype=ids.dtype), ids])



def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A `tf.data` pipeline of `(contexts, next_ids)` minibatches for `model.fit`, one pass over the examples.

    Args:
        x, y: the examples, as `build_examples` returns them.
        batch_size: examples per minibatch.
        shuffle: reshuffle the examples on every pass.
        seed: seed of the shuffle.
        drop_remainder: drop the last, smaller minibatch of each pass, so that
            every minibatch has `batch_size` examples (as `engine.fit` needs).

    Example:

    >>> x, y = build_examples(["emma", "ava"], Vocabulary.from_words(["emma", "ava"]), 3)
    >>> ds = make_dataset(x, y, batch_size=4, seed=0)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(4, 3), (4,)]
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
    if not shuffle:
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder).prefetch(tf.data.AUTOTUNE)
    examples, targets = tf.constant(x), tf.constant(y)
    full = len(x) // batch_size * batch_size

    def one_pass(pass_seed):
        # A whole pass is shuffled and gathered in one op, then cut into minibatches: per-example
        # shuffling in tf.data costs more than the training step of a small model (measured 2.5x).
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=tf.stack([pass_seed, 0]))
        batches = tf.reshape(order[:full], [-1, batch_size])
        minibatches = tf.data.Dataset.from_tensor_slices((tf.gather(examples, batches), tf.gather(targets, batches)))
        if not drop_remainder and full < len(x):
            rest = order[full:]
            minibatches = minibatches.concatenate(
                tf.data.Dataset.from_tensors((tf.gather(examples, rest), tf.gather(targets, rest))))
        return minibatches

    # One new seed per pass over the dataset: every `iter()` reshuffles, as `Dataset.shuffle` does.
    pass_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    minibatches = full // batch_size + (0 if drop_remainder or full == len(x) else 1)
    return (pass_seeds.flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(minibatches))
            .prefetch(tf.data.AUTOTUNE))


def random_minibatches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    steps: int,
    first_step: int = 0,
) -> tf.data.Dataset:
    """The lecture's minibatches, `ix = randint(0, n, (batch_size,))` at each step, as a `tf.data` pipeline.

    The indices of step `t` are row `t % 100` of a stateless draw seeded with
    `(seed, t // 100)`: a function of the seed and the step alone, so the
    minibatches of steps `first_step` to `steps - 1` are the same whether a
    run starts at step 0 or resumes at `first_step`. `Windows.random_minibatches`
    draws the very same minibatches, cut from the flat ids.

    Args:
        x, y: the examples, as `build_examples` returns them.
        batch_size: examples per minibatch, drawn with replacement.
        seed: seed of the draws.
        steps: the step after the last minibatch.
        first_step: the step of the first minibatch.

    Example:

    >>> x, y = build_examples(["emma", "ava"], Vocabulary.from_words(["emma", "ava"]), 3)
    >>> resumed = random_minibatches(x, y, 4, seed=0, steps=10, first_step=6)
    >>> whole = random_minibatches(x, y, 4, seed=0, steps=10)
    >>> bool((next(iter(resumed))[0] == list(whole)[6][0]).numpy().all())
    True
    """
    examples, targets = tf.constant(x), tf.constant(y)
    return _random_minibatches(len(x), lambda i: (tf.gather(examples, i), tf.gather(targets, i)),
                               batch_size, seed, steps, first_step)


def _random_minibatches(n, gather, batch_size, seed, steps, first_step) -> tf.data.Dataset:
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
    if not 0 <= first_step <= steps:
        raise UserError(f"first_step must be in [0, steps={steps}], got {first_step}", argument="first_step")

    def draw(block):
        indices = tf.random.stateless_uniform([_DRAW_BLOCK, batch_size], seed=tf.stack([tf.constant(seed, tf.int64), block]),
                                              maxval=n, dtype=tf.int32)
        return gather(indices)

    first_block = first_step // _DRAW_BLOCK
    return (tf.data.Dataset.range(first_block, -(-steps // _DRAW_BLOCK)).map(draw).unbatch()
            .skip(first_step - first_block * _DRAW_BLOCK).take(steps - first_step).prefetch(tf.data.AUTOTUNE))
