"""The layers the word models need beyond Keras' own, registered so that `load_model` (safe mode) rebuilds them."""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# The attention bias of a masked score: a large negative number, not -inf: exp underflows to exactly 0 either way.
MASKED = -1e9


@keras.saving.register_keras_serializable(package="keras_makemore")
class WordBoundaries(keras.layers.Layer):
    """Where each word of a row of token ids starts: who may attend to whom, and each token's position in its word.

    A row holds one word (the start marker, its characters, marker padding) or
    several packed end to end, each beginning with the start marker. A token
    may attend to itself and the earlier tokens of its own word; its position
    counts from its word's start marker. For a row of one word this is the
    plain causal mask and the column index at every position of the word.

    Args:
        start_id: the token id that starts a word (the marker).

    Returns:
        `(bias, positions)`: the attention bias `[batch, 1, length, length]`,
        0 where attending is allowed and `MASKED` where not, and the positions
        `[batch, length]`, int32.

    Example:

    >>> bias, positions = WordBoundaries()(np.array([[0, 5, 0, 7, 8]]))
    >>> positions.numpy().tolist()
    [[0, 1, 0, 1, 2]]
    >>> (bias.numpy()[0, 0, 3] == 0).tolist()
    [False, False, True, True, False]
    """

    def __init__(self, start_id: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_id = start_id

    def call(self, tokens):
        length = tokens.shape[1]
        words = ops.cumsum(ops.cast(ops.equal(tokens, self.start_id), "int32"), axis=1)
        allowed = ops.logical_and(ops.equal(words[:, :, None], words[:, None, :]),
                                  np.tril(np.ones((length, length), bool)))
        positions = ops.sum(ops.cast(allowed, "int32"), axis=-1) - 1
        bias = ops.where(allowed, 0.0, MASKED)[:, None]
        return bias, positions

    def compute_output_spec(self, tokens):
        batch, length = tokens.shape
        return (keras.KerasTensor((batch, 1, length, length), "float32"),
                keras.KerasTensor((batch, length), "int32"))

    def get_config(self):
        return super().get_config() | {"start_id": self.start_id}


@keras.saving.register_keras_serializable(package="keras_makemore")
class LearnedState(keras.layers.Layer):
    """A learned vector, the same for every row: `[batch, ...]` in, `[batch, units]` out (makemore.py's `RNN.start`).

    The recurrent networks start from it, as makemore.py's `RNN` starts from
    its `start` parameter, a `[1, n_embd2]` tensor of zeros at first.

    Args:
        units: the vector's size.

    Example:

    >>> LearnedState(3)(np.zeros((2, 5), "int32")).numpy().tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"units must be at least 1, got {units}")
        self.units = units

    def build(self, input_shape):
        self.start = self.add_weight(shape=(1, self.units), initializer="zeros", name="start")

    def call(self, x):
        return ops.tile(self.start, (ops.shape(x)[0], 1))

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], self.units), "float32")

    def get_config(self):
        return super().get_config() | {"units": self.units}


@keras.saving.register_keras_serializable(package="keras_makemore")
class PositionEmbedding(keras.layers.Layer):
    """Add a learned vector per position: `[batch, length, dim]` in and out (makemore.py's `wpe`).

    Args:
        length: the positions, the input's second dimension.
        initializer: of the `[length, dim]` table.

    Call arguments:
        x: `[batch, length, dim]`.
        positions: optional int32 `[batch, length]`, each vector's position
            (`WordBoundaries`' for packed words); by default its column.

    Example:

    >>> layer = PositionEmbedding(4)
    >>> tuple(layer(np.zeros((2, 4, 3), "float32")).shape)
    (2, 4, 3)
    """

    def __init__(self, length: int, initializer="uniform", **kwargs):
        super().__init__(**kwargs)
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length = length
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.length, input_shape[-1]), initializer=self.initializer,
                                          name="embeddings")

    def call(self, x, positions=None):
        if positions is None:
            return x + self.embeddings[None]
        return x + ops.take(self.embeddings, positions, axis=0)

    def get_config(self):
        return super().get_config() | {"length": self.length,
                                       "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package="keras_makemore")
class CausalMean(keras.layers.Layer):
    """Each position the mean of the vectors at itself and before it (makemore.py's `CausalBoW`).

    Example:

    >>> CausalMean()(np.array([[[2.0], [4.0], [0.0]]], "float32")).numpy().ravel().tolist()
    [2.0, 3.0, 2.0]
    """

    def call(self, x):
        # A running sum, not makemore.py's masked [T, T] average: the same numbers, and LiteRT's converter
        # turns the einsum of a constant matrix with a batch of unknown size into a model it cannot load.
        counts = np.arange(1, x.shape[1] + 1, dtype="float32")[:, None]
        return ops.cumsum(x, axis=1) / counts


@keras.saving.register_keras_serializable(package="keras_makemore")
class CausalSelfAttention(keras.layers.Layer):
    """Multi-head masked self-attention as in makemore.py (and minGPT): one `[dim, 3 dim]` projection for q, k, v.

    Args:
        heads: attention heads; they split the input's width.
        kernel_initializer: of both projections (each gets its own copy).

    Call arguments:
        x: `[batch, length, dim]`.
        bias: optional `[batch, 1, length, length]` added to the attention
            scores (`WordBoundaries`' for packed words); by default the causal mask.

    Example:

    >>> layer = CausalSelfAttention(heads=2)
    >>> tuple(layer(np.zeros((1, 5, 8), "float32")).shape)
    (1, 5, 8)
    """

    def __init__(self, heads: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if heads < 1:
            raise ValueError(f"heads must be at least 1, got {heads}")
        self.heads = heads
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.heads:
            raise ValueError(f"the input's width {dim} must be a multiple of heads {self.heads}")
        config = keras.initializers.serialize(self.kernel_initializer)
        seed = config["config"].get("seed")
        second = keras.initializers.deserialize(config | {"config": config["config"] | (
            {"seed": seed + 1} if seed is not None else {})})
        self.qkv = keras.layers.Dense(3 * dim, kernel_initializer=self.kernel_initializer, name="qkv")
        self.proj = keras.layers.Dense(dim, kernel_initializer=second, name="proj")
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, x, bias=None):
        length, dim = x.shape[1], x.shape[2]
        size = dim // self.heads

        def heads(t):  # [batch, length, dim] -> [batch, heads, length, size]
            return ops.transpose(ops.reshape(t, (-1, length, self.heads, size)), (0, 2, 1, 3))

        q, k, v = (heads(t) for t in ops.split(self.qkv(x), 3, axis=-1))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / size**0.5)
        if bias is None:
            bias = np.triu(np.full((length, length), MASKED, "float32"), k=1)
        attention = ops.softmax(scores + bias, axis=-1)
        y = ops.reshape(ops.transpose(ops.matmul(attention, v), (0, 2, 1, 3)), (-1, length, dim))
        return self.proj(y)

    def decode(self, x, position, keys, values):
        """One position of a word at a time: `call` at `position`, given the keys and values of the earlier ones.

        Args:
            x: `[batch, dim]`, the input at `position`.
            position: int32 scalar below the cache's length, where this
                position's key and value are written; None appends them to the
                cache instead (which then holds the earlier positions only).
            keys, values: the cache, `[batch, heads, positions, dim / heads]`;
                positions from `position` on are not read.

        Returns:
            `(y, keys, values)`: the output `[batch, dim]`, and the cache with
            this position's key and value.
        """
        dim = x.shape[-1]
        size = dim // self.heads
        q, k, v = (ops.reshape(t, (-1, self.heads, 1, size)) for t in ops.split(self.qkv(x), 3, axis=-1))
        if position is None:
            keys, values = ops.concatenate([keys, k], axis=2), ops.concatenate([values, v], axis=2)
            bias = 0.0
        else:
            length = keys.shape[2]
            here = ops.reshape(ops.equal(ops.arange(length), position), (1, 1, length, 1))
            keys, values = ops.where(here, k, keys), ops.where(here, v, values)
            bias = ops.where(ops.arange(length) > position, MASKED, 0.0)
        # Products and sums, not batched matmuls of one row: many tiny matrices are slow in LiteRT.
        scores = ops.sum(q * keys, axis=-1) * (1.0 / size**0.5)  # [batch, heads, positions]
        attention = tf.nn.softmax(scores + bias, axis=-1)  # Keras' softmax warns about the first step's single position
        y = ops.sum(ops.expand_dims(attention, -1) * values, axis=2)  # [batch, heads, size]
        return self.proj(ops.reshape(y, (-1, dim))), keys, values

    def get_config(self):
        return super().get_config() | {"heads": self.heads,
                                       "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
