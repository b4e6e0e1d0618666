"""The layers the word models need beyond Keras' own, registered so that `load_model` (safe mode) rebuilds them."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_makemore")
class PositionEmbedding(keras.layers.Layer):
    """Add a learned vector per position: `[batch, length, dim]` in and out (makemore.py's `wpe`).

    Args:
        length: the positions, the input's second dimension.
        initializer: of the `[length, dim]` table.

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

    def call(self, x):
        return x + self.embeddings[None]

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

    def call(self, x):
        length, dim = x.shape[1], x.shape[2]
        size = dim // self.heads

        def heads(t):  # [batch, length, dim] -> [batch, heads, length, size]
            return ops.transpose(ops.reshape(t, (-1, length, self.heads, size)), (0, 2, 1, 3))

        q, k, v = (heads(t) for t in ops.split(self.qkv(x), 3, axis=-1))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / size**0.5)
        # Masked scores get a large negative bias, not -inf: exp underflows to exactly 0 either way.
        future = np.triu(np.full((length, length), -1e9, "float32"), k=1)
        attention = ops.softmax(scores + future, axis=-1)
        y = ops.reshape(ops.transpose(ops.matmul(attention, v), (0, 2, 1, 3)), (-1, length, dim))
        return self.proj(y)

    def get_config(self):
        return super().get_config() | {"heads": self.heads,
                                       "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
