"""Whole words sampled inside a TensorFlow graph, for SavedModel and LiteRT exports.

The loop of `sampling.sample_words` written in TensorFlow ops that the LiteRT
converter turns into builtins (a WHILE loop, CUMSUM, integer arithmetic), so
that a phone gets a word, or a batch of words, from one invoke. It applies the
same inverse-CDF rule as `sampling.pick_tokens` (the first token whose
cumulative probability exceeds `u`), so Keras, SavedModel and LiteRT given the
same float32 uniforms produce the same words.

A seed is turned into uniforms by a counter-based hash that needs only int32
arithmetic that cannot overflow (multiplication modulo the prime 2**31 - 1 by
Schrage's method, xor and shifts). The very same Python function runs on numpy
arrays (`seeded_uniforms`) and on tensors inside the graph, so a seed gives the
same uniforms, bit for bit, in numpy, TensorFlow and LiteRT.
"""

from typing import Callable

import numpy as np
import tensorflow as tf

from keras_makemore.data import MARKER_ID

_MODULUS = 2**31 - 1  # a prime, so that multiplying modulo it scrambles
# (xor constant, multiplier, shift) of each scrambling round.
_ROUNDS = ((0x2545F491, 48271, 16), (0x1B873593, 16807, 13), (0x6B43A9B5, 69621, 15))


def _mulmod(x, a: int):
    """`(a * x) mod (2**31 - 1)` for `0 <= x < 2**31`, never leaving int32 (Schrage's method)."""
    q, r = divmod(_MODULUS, a)
    return (a * (x % q) - r * (x // q)) % _MODULUS


def _scramble(x, xor):
    for constant, multiplier, shift in _ROUNDS:
        x = _mulmod(xor(x, constant), multiplier)
        x = xor(x, x // 2**shift)
    return x


def _row_states(seed, rows, xor):
    return _scramble(xor(_scramble(seed % _MODULUS, xor), rows), xor)


def _uniforms_from_states(states, cols, xor, to_float):
    """Uniform numbers in (0, 1), one per `(row state, col)`: odd multiples of 2**-24, exact in float32."""
    x = _scramble(xor(states, cols), xor)
    return to_float((x // 2**8) * 2 + 1) * 2.0**-24


def seeded_uniforms(seed: int, num_words: int, max_length: int) -> np.ndarray:
    """The float32 `[num_words, max_length]` uniforms that `generate` draws from `seed`.

    Pass them to `sample_words(..., uniforms=...)` to get from Keras the words
    an exported model's `generate` signature gives for `seed`.

    Example:

    >>> u = seeded_uniforms(seed=7, num_words=2, max_length=4)
    >>> u.shape, u.dtype
    ((2, 4), dtype('float32'))
    """
    states = _row_states(np.int64(seed), np.arange(num_words, dtype=np.int64)[:, None], np.bitwise_xor)
    cols = np.arange(max_length, dtype=np.int64)[None, :]
    return _uniforms_from_states(states, cols, np.bitwise_xor, lambda x: x.astype(np.float32)).astype(np.float32)


def _tf_xor(a, b):
    return tf.bitwise.bitwise_xor(a, tf.cast(b, tf.int32))


def seeded_uniforms_tf(seed: tf.Tensor, num_words: tf.Tensor, max_length: int) -> tf.Tensor:
    """`seeded_uniforms` inside a graph; `seed` and `num_words` are int32 scalars."""
    states = _row_states(tf.cast(seed, tf.int32), tf.range(num_words, dtype=tf.int32)[:, None], _tf_xor)
    cols = tf.range(max_length, dtype=tf.int32)[None, :]
    return _uniforms_from_states(states, cols, _tf_xor, lambda x: tf.cast(x, tf.float32))


def seeded_uniforms_fn(seed: tf.Tensor, num_words: tf.Tensor) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """`(rows, t) -> seeded_uniforms(seed, num_words, ...)[rows, t]`, computed only for the rows asked."""
    states = _row_states(tf.cast(seed, tf.int32), tf.range(num_words, dtype=tf.int32), _tf_xor)
    return lambda rows, t: _uniforms_from_states(tf.gather(states, rows), t, _tf_xor,
                                                 lambda x: tf.cast(x, tf.float32))


def given_uniforms_fn(uniforms: tf.Tensor) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """`(rows, t) -> uniforms[rows, t]`."""
    return lambda rows, t: tf.gather(tf.gather(uniforms, t, axis=1), rows)


def generate_tokens(
    logits_fn: Callable[[tf.Tensor], tf.Tensor],
    uniforms_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    num_words: tf.Tensor,
    max_length: tf.Tensor | int,
    temperature: tf.Tensor,
    block_size: int,
    vocab_size: int,
) -> tf.Tensor:
    """Sample `num_words` words inside the graph.

    Only the words still growing are fed to the model: each step drops the
    words that drew their marker, so the work follows the characters sampled,
    not `num_words * max_length`.

    Args:
        logits_fn: int32 contexts `[batch, block_size]` -> logits `[batch, vocab]`.
        uniforms_fn: `(rows, t)` -> float32 uniforms `[len(rows)]` drawing
            character `t` of the words `rows`.
        num_words: int32 scalar.
        max_length: characters drawn at most per word.
        temperature: float32 scalar > 0.
        block_size: the model's context length.
        vocab_size: tokens, the marker included.

    Returns:
        int32 token ids `[num_words, max_length]`: each word's characters, then
        markers (0).
    """
    positions = tf.range(max_length)

    def keep_going(t, rows, context, tokens):
        return tf.logical_and(t < max_length, tf.size(rows) > 0)

    def step(t, rows, context, tokens):
        probs = tf.nn.softmax(logits_fn(context) / temperature)
        cdf = tf.cumsum(probs, axis=-1)
        u = uniforms_fn(rows, t)[:, None]
        picks = tf.reduce_sum(tf.cast(cdf < u * cdf[:, -1:], tf.int32), axis=-1)
        picks = tf.minimum(picks, vocab_size - 1)
        column = tf.scatter_nd(rows[:, None], picks, [num_words])
        tokens += column[:, None] * tf.cast(tf.equal(positions, t), tf.int32)[None, :]
        growing = tf.cast(tf.where(picks != MARKER_ID)[:, 0], tf.int32)
        context = tf.concat([context[:, 1:], picks[:, None]], axis=1)
        return t + 1, tf.gather(rows, growing), tf.gather(context, growing), tokens

    start = (tf.constant(0), tf.range(num_words), tf.zeros([num_words, block_size], tf.int32),
             tf.zeros([num_words, max_length], tf.int32))
    invariants = (tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None, block_size]),
                  tf.TensorShape([None, None]))
    return tf.while_loop(keep_going, step, start, shape_invariants=invariants)[3]
