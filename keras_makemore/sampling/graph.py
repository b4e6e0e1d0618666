"""Whole words sampled inside a TensorFlow graph: one loop for Keras, SavedModel and LiteRT.

`generate_tokens` is the only sampling code in keras-makemore. `sample_words`
runs it around the Keras model, `keras-makemore export` writes it into the
SavedModel and the `.tflite` file, so one seed and one set of controls give
the same words everywhere. Its ops are LiteRT builtins (a WHILE loop, TOPK_V2,
CUMSUM, integer arithmetic) that LiteRT.js runs too.

Each character is drawn with one uniform number `u(seed, row, position)` from
a counter-based hash that needs only int32 arithmetic that cannot overflow
(multiplication modulo the prime 2**31 - 1 by Schrage's method, xor and
shifts). The same Python function runs on numpy arrays (`seeded_uniforms`) and
on tensors, so a seed gives the same numbers, bit for bit, in numpy,
TensorFlow and LiteRT. Row `r` of a seed's stream does not depend on how many
rows are asked for, so words can be drawn in chunks (`first_row`).
"""

import weakref
from typing import Callable

import numpy as np
import tensorflow as tf

from keras_makemore.data.vocabulary import MARKER_ID
from keras_makemore.models.keras_model import Decoder, decoder, is_word_model, next_token_logits

FEW_WORDS = 8  # calls of at most this many words keep them all in the loop to the end (see `generate_tokens`)
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


def seeded_uniforms(seed: int, num_words: int, max_length: int, first_row: int = 0) -> np.ndarray:
    """The float32 uniforms `[num_words, max_length]` of rows `first_row...` of `seed`'s stream.

    Character `t` of word `r` is the first token whose cumulative probability
    exceeds `u[r, t]` times the total; every runtime draws with these numbers.

    Example:

    >>> u = seeded_uniforms(seed=7, num_words=2, max_length=4)
    >>> u.shape, u.dtype
    ((2, 4), dtype('float32'))
    >>> bool((seeded_uniforms(7, 1, 4, first_row=1) == u[1:]).all())
    True
    """
    rows = np.arange(first_row, first_row + num_words, dtype=np.int64)[:, None]
    states = _row_states(np.int64(seed), rows, np.bitwise_xor)
    cols = np.arange(max_length, dtype=np.int64)[None, :]
    return _uniforms_from_states(states, cols, np.bitwise_xor, lambda x: x.astype(np.float32)).astype(np.float32)


def _tf_xor(a, b):
    return tf.bitwise.bitwise_xor(a, tf.cast(b, tf.int32))


def seeded_uniforms_fn(seed: tf.Tensor, first_row: tf.Tensor, num_words: tf.Tensor) -> Callable:
    """`(rows, t) -> seeded_uniforms(seed, num_words, ..., first_row)[rows, t]`, computed only for `rows`."""
    rows = tf.range(num_words, dtype=tf.int32) + tf.cast(first_row, tf.int32)
    states = _row_states(tf.cast(seed, tf.int32), rows, _tf_xor)
    return lambda rows, t: _uniforms_from_states(tf.gather(states, rows), t, _tf_xor,
                                                 lambda x: tf.cast(x, tf.float32))


def pick_tokens(logits, uniforms, t, temperature, top_k, top_p, min_length):
    """One character per row: the sampling rule every runtime shares.

    The pick is the first token whose cumulative weight exceeds `uniforms`
    times the total weight, the weights being `softmax(logits / temperature)`,
    filtered when a control asks for it (see `_filtered_weights`).

    Args:
        logits: float32 `[batch, vocab]`.
        uniforms: float32 `[batch]` in (0, 1).
        t: int32 scalar, the character's position in the word.
        temperature: float32 scalar > 0.
        top_k: int32 scalar; 0 keeps every token.
        top_p: float32 scalar in (0, 1]; 1 keeps every token.
        min_length: int32 scalar.

    Returns:
        int32 token ids `[batch]`.
    """
    scaled = logits / temperature
    # Filtering sorts every row: it halves LiteRT's words/s, so it runs only when asked for.
    needed = tf.logical_or(tf.logical_or(top_k > 0, top_p < 1.0), t < min_length)
    weights = tf.cond(needed, lambda: _filtered_weights(scaled, t, top_k, top_p, min_length),
                      lambda: tf.nn.softmax(scaled))
    cdf = tf.cumsum(weights, axis=-1)
    picks = tf.reduce_sum(tf.cast(cdf < uniforms[:, None] * cdf[:, -1:], tf.int32), axis=-1)
    return tf.minimum(picks, logits.shape[-1] - 1)


def _filtered_weights(scaled, t, top_k, top_p, min_length):
    """Unnormalised weights: no end marker before `min_length`, then the top-k and top-p cut-offs.

    The weights are `exp(scaled)` relative to the likeliest allowed token, so
    they never overflow and that token's weight is 1 even when the others
    underflow. Top-k and top-p keep the tokens at least as likely as the last
    one inside both cut-offs (ties are kept). Tokens are ranked and cut by
    their scaled logits, not by their weights: TensorFlow's exp can give equal
    logits weights an ulp apart, depending on where they lie in the batch (its
    vectorised and its scalar path), which would break a tie one way in a call
    of one word and the other in a call of many. Ties are common: a bigram's
    table starts at zero, and the characters never seen after a character keep
    equal logits.
    """
    vocab_size = scaled.shape[-1]
    allowed = tf.logical_or(tf.not_equal(tf.range(vocab_size), MARKER_ID), t >= min_length)
    scaled = tf.where(allowed, scaled, scaled.dtype.min)  # ranks last, weight 0
    best = tf.reduce_max(scaled, axis=-1, keepdims=True)
    ranked = tf.math.top_k(scaled, k=vocab_size, sorted=True).values
    in_top_k = tf.range(vocab_size) < tf.where(top_k > 0, top_k, vocab_size)
    ranked_k = tf.where(in_top_k, tf.exp(tf.minimum(ranked - best, 0.0)), 0.0)
    before = tf.cumsum(ranked_k, axis=-1, exclusive=True)
    in_top_p = tf.logical_or(before < top_p * tf.reduce_sum(ranked_k, axis=-1, keepdims=True), top_p >= 1.0)
    threshold = tf.reduce_min(tf.where(tf.logical_and(in_top_k, in_top_p), ranked, ranked[:, :1]),
                              axis=-1, keepdims=True)
    return tf.where(tf.logical_and(allowed, scaled >= threshold), tf.exp(tf.minimum(scaled - best, 0.0)), 0.0)


def generate_tokens(
    logits_fn: Callable[[tf.Tensor], tf.Tensor],
    seed: tf.Tensor,
    first_row: tf.Tensor,
    num_words: tf.Tensor,
    temperature: tf.Tensor,
    top_k: tf.Tensor,
    top_p: tf.Tensor,
    prefix: tf.Tensor,
    min_length: tf.Tensor,
    max_length: tf.Tensor,
    block_size: int,
    decoder: Decoder | None = None,
    few_words_decoder: Decoder | None = None,
) -> tf.Tensor:
    """Sample rows `first_row .. first_row + num_words - 1` of `seed`'s stream inside the graph.

    Only the words still growing are fed to the model: each step drops the
    words that drew their marker, so the work follows the characters sampled,
    not `num_words * max_length`. With a `decoder` (a word model's), the
    first `decoder.length` characters come from its steps, its state carried
    from one character to the next; a longer word goes on through
    `logits_fn` on the last `block_size` tokens. Both give the same logits.

    A call of at most `FEW_WORDS` words keeps every word in the loop to the
    end, finished or not, with `few_words_decoder` (one whose state keeps its
    shape): every tensor of the loop then keeps its shape from step to step,
    which spares LiteRT from planning the loop's memory again at each step
    (most of one word's time otherwise). When that loop finishes every word,
    the loops for many words and long words are skipped, not run for no step.

    Args:
        logits_fn: int32 contexts `[batch, block_size]` -> logits `[batch, vocab]`.
        seed, first_row, num_words: int32 scalars.
        temperature, top_k, top_p, min_length: see `pick_tokens`.
        prefix: int32 `[width]` token ids every word starts with, zero-padded;
            its length `width` is the width of the result.
        max_length: int32 scalar, the longest word (prefix included); 0 means `width`.
        block_size: the model's context length.
        decoder: the model fed one token at a time (`models.base.decoder`), or None.
        few_words_decoder: the same with a state of fixed shape (default: `decoder`).

    Returns:
        int32 token ids `[num_words, width]`: each word's characters, then
        markers (0).
    """
    width = tf.shape(prefix)[0]
    positions = tf.range(width)
    prefix_length = tf.reduce_min(tf.where(tf.equal(prefix, MARKER_ID), positions, width))
    length = tf.where(max_length > 0, tf.minimum(max_length, width), width)
    uniforms_fn = seeded_uniforms_fn(seed, first_row, num_words)

    def keep_going(t, rows, context, tokens, *state):
        return tf.logical_and(t < length, tf.size(rows) > 0)

    def pick(t, rows, context, tokens, logits):
        """Draw position `t`; the words still growing (their indices), their rows and contexts, and the tokens."""
        sampled = pick_tokens(logits, uniforms_fn(rows, t), t, temperature, top_k, top_p, min_length)
        picks = tf.where(t < prefix_length, tf.gather(prefix, t), sampled)
        column = tf.scatter_nd(rows[:, None], picks, [num_words])
        tokens += column[:, None] * tf.cast(tf.equal(positions, t), tf.int32)[None, :]
        growing = tf.cast(tf.where(picks != MARKER_ID)[:, 0], tf.int32)
        context = tf.concat([context[:, 1:], picks[:, None]], axis=1)
        return growing, tf.gather(rows, growing), tf.gather(context, growing), tokens

    def step(t, rows, context, tokens):
        _, rows, context, tokens = pick(t, rows, context, tokens, logits_fn(context))
        return t + 1, rows, context, tokens

    start = (tf.constant(0), tf.range(num_words), tf.zeros([num_words, block_size], tf.int32),
             tf.zeros([num_words, width], tf.int32))
    invariants = (tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None, block_size]),
                  start[3].shape)

    def by_windows(start):
        """The tokens after the loop that feeds the model its windows, from `start`."""
        return tf.while_loop(keep_going, step, start, shape_invariants=invariants)[3]

    if decoder is not None:
        # At most FEW_WORDS words: all of them to the end, every tensor of the loop keeping its shape.
        steps, few = few_words_decoder or decoder, tf.minimum(num_words, FEW_WORDS)
        few_rows = tf.range(few)  # made once: a RANGE inside the loop would give it a shape that may change

        def decode_few(t, alive, context, tokens, *state):
            logits, state = steps.step(context[:, -1], t, state)  # the token drawn last, the marker at first
            sampled = pick_tokens(logits, uniforms_fn(few_rows, t), t, temperature, top_k, top_p, min_length)
            picks = tf.where(alive, tf.where(t < prefix_length, tf.gather(prefix, t), sampled), MARKER_ID)
            tokens += picks[:, None] * tf.cast(tf.equal(positions, t), tf.int32)[None, :]
            context = tf.concat([context[:, 1:], picks[:, None]], axis=1)
            return (t + 1, tf.logical_and(alive, picks != MARKER_ID), context, tokens, *state)

        t, alive, context, tokens = tf.while_loop(
            lambda t, alive, *rest: tf.logical_and(tf.logical_and(num_words <= FEW_WORDS, t < length),
                                                   tf.logical_and(t < steps.length, tf.reduce_any(alive))),
            decode_few, (start[0], tf.ones([few], tf.bool), tf.zeros([few, block_size], tf.int32),
                         tf.zeros([few, width], tf.int32), *steps.initial_state(few)))[:4]

        def more_words():
            """The loop for many words, from where the few words' loop stopped (or at the beginning, when it did
            not run), then the window loop for words longer than the decoder's steps."""
            every_row = tf.range(num_words)
            growing = tf.logical_or(every_row >= few, tf.gather(alive, tf.minimum(every_row, few - 1)))
            rows = tf.cast(tf.where(growing)[:, 0], tf.int32)
            more = [[0, num_words - few], [0, 0]]  # rows the few words' loop did not hold: zeros
            start = (t, rows, tf.gather(tf.pad(context, more), rows), tf.pad(tokens, more))

            def decode(t, rows, context, tokens, *state):
                logits, state = decoder.step(context[:, -1], t, state)
                growing, rows, context, tokens = pick(t, rows, context, tokens, logits)
                return (t + 1, rows, context, tokens, *(tf.gather(s, growing) for s in state))

            state = tuple(decoder.initial_state(tf.size(rows)))  # (no row when no word is left)
            start = tf.while_loop(
                lambda t, *rest: tf.logical_and(keep_going(t, *rest), t < decoder.length), decode, (*start, *state),
                shape_invariants=(*invariants, *(_growing(s.shape) for s in state)))[:4]
            if prefix.shape[0] is not None and prefix.shape[0] <= decoder.length:
                return start[3]  # no word is longer than the decoder's steps
            return by_windows(start)

        # Skipped when the few words' loop finished every word, as it does for most calls of a few words. Run for
        # no step, those two loops cost LiteRT a quarter of a one-word call: the transformer preset's .tflite took
        # 0.49 ms a word with them, 0.36 ms without (2 idle cores; benchmarks/device_sampling.py).
        return tf.cond(tf.logical_or(num_words > FEW_WORDS, tf.logical_and(t < length, tf.reduce_any(alive))),
                       more_words, lambda: tokens)
    return by_windows(start)


def _growing(shape: tf.TensorShape) -> tf.TensorShape:
    """The loop's invariant of a state tensor: any number of rows, and any size where it starts empty (a cache
    that grows by a position a step)."""
    return tf.TensorShape([None, *(None if size == 0 else size for size in shape[1:])])


_KERAS_GRAPHS = weakref.WeakKeyDictionary()


def keras_graph_function(model, block_size: int, graph_fn: Callable, input_signature: list) -> Callable:
    """`tf.function` of `graph_fn(logits_fn, block_size, *inputs)` around a Keras model, traced once per model.

    The traced graph holds the model's weights, not the model, so it goes
    with the model; it reads the weights' current values, so it follows
    training. For a word model `logits_fn` has `decoder` and
    `few_words_decoder` attributes, its `models.base.decoder`s (see `model_decoders`).
    """
    graphs = _KERAS_GRAPHS.setdefault(model, {})
    key = (graph_fn, block_size)  # a call with another block size must not reuse, or poison, this graph
    if key not in graphs:
        model_ref = weakref.ref(model)

        def logits_fn(context):
            return next_token_logits(model_ref())(context)

        if is_word_model(model):
            logits_fn.decoder, logits_fn.few_words_decoder = (
                Decoder(lambda batch, compact=compact: decoder(model_ref(), compact).initial_state(batch),
                        lambda *step, compact=compact: decoder(model_ref(), compact).step(*step), block_size)
                for compact in (True, False))

        # The graph functions write their loops and branches as TensorFlow ops: without AutoGraph's rewrite
        # of their source, the first call traces in 0.1 s instead of 1.0 s (the lecture's MLP).
        graphs[key] = tf.function(lambda *inputs: graph_fn(logits_fn, block_size, *inputs),
                                  input_signature=input_signature, autograph=False)
    return graphs[key]


def model_decoders(logits_fn: Callable) -> dict:
    """`generate_tokens`' `decoder` and `few_words_decoder` of the word model that `keras_graph_function` attached
    to `logits_fn` (none for a window model)."""
    return {key: getattr(logits_fn, key) for key in ("decoder", "few_words_decoder") if hasattr(logits_fn, key)}
