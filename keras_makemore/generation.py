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


def _hash_uniforms(seed, rows, cols, xor, to_float):
    """Uniform numbers in (0, 1), one per `(seed, row, col)`: odd multiples of 2**-24, exact in float32."""
    x = _scramble(seed % _MODULUS, xor)
    x = _scramble(xor(x, rows), xor)
    x = _scramble(xor(x, cols), xor)
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
    rows = np.arange(num_words, dtype=np.int64)[:, None]
    cols = np.arange(max_length, dtype=np.int64)[None, :]
    return _hash_uniforms(np.int64(seed), rows, cols, np.bitwise_xor,
                          lambda x: x.astype(np.float32)).astype(np.float32)


def seeded_uniforms_tf(seed: tf.Tensor, num_words: tf.Tensor, max_length: int) -> tf.Tensor:
    """`seeded_uniforms` inside a graph; `seed` and `num_words` are int32 scalars."""
    rows = tf.range(num_words, dtype=tf.int32)[:, None]
    cols = tf.range(max_length, dtype=tf.int32)[None, :]
    xor = lambda a, b: tf.bitwise.bitwise_xor(a, tf.cast(b, tf.int32))  # noqa: E731
    return _hash_uniforms(tf.cast(seed, tf.int32), rows, cols, xor, lambda x: tf.cast(x, tf.float32))


def generate_tokens(
    logits_fn: Callable[[tf.Tensor], tf.Tensor],
    uniforms: tf.Tensor,
    temperature: tf.Tensor,
    block_size: int,
    vocab_size: int,
) -> tf.Tensor:
    """Sample one word per row of `uniforms`, inside the graph.

    Args:
        logits_fn: int32 contexts `[batch, block_size]` -> logits `[batch, vocab]`.
        uniforms: float32 `[batch, max_length]`; column `t` draws character `t`.
        temperature: float32 scalar > 0.
        block_size: the model's context length.
        vocab_size: tokens, the marker included.

    Returns:
        int32 token ids `[batch, max_length]`: each word's characters, then
        markers (0). The loop stops once every word has drawn its marker.
    """
    batch, max_length = tf.shape(uniforms)[0], tf.shape(uniforms)[1]
    positions = tf.range(max_length)

    def keep_going(t, context, tokens, alive):
        return tf.logical_and(t < max_length, tf.reduce_any(alive))

    def step(t, context, tokens, alive):
        probs = tf.nn.softmax(logits_fn(context) / temperature)
        cdf = tf.cumsum(probs, axis=-1)
        u = tf.gather(uniforms, t, axis=1)[:, None]
        picks = tf.reduce_sum(tf.cast(cdf < u * cdf[:, -1:], tf.int32), axis=-1)
        picks = tf.where(alive, tf.minimum(picks, vocab_size - 1), MARKER_ID)
        tokens += picks[:, None] * tf.cast(tf.equal(positions, t), tf.int32)[None, :]
        context = tf.concat([context[:, 1:], picks[:, None]], axis=1)
        return t + 1, context, tokens, tf.logical_and(alive, picks != MARKER_ID)

    start = (tf.constant(0), tf.zeros([batch, block_size], tf.int32),
             tf.zeros([batch, max_length], tf.int32), tf.ones([batch], tf.bool))
    return tf.while_loop(keep_going, step, start)[2]
