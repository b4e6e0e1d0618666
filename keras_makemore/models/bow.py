"""`bow`: makemore.py's bag of words: each position averages the embeddings of the word so far, then an MLP."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.models.base import EMBEDDING_LAYER, WORD, ModelType, keras_name


def build_bow(vocab_size: int, length: int, embed_dim: int = 64, hidden_units: int = 64,
              seed: int | None = None) -> keras.Model:
    """Build makemore.py's `BoW`: token + position embeddings, `x + mean(x so far)`, `x + MLP(x)`, `Dense`.

    Args:
        vocab_size: number of tokens, the marker included.
        length: positions per word sequence (`T`: the longest word plus one).
        embed_dim: width of the embeddings (makemore.py's `n_embd`).
        hidden_units: width of the tanh MLP (`n_embd2`).
        seed: seed of the initial weights (None: Keras' global generator).

    Where it differs from makemore.py on purpose: the causal mean is a
    running sum divided by the count (`CausalMean`), not a masked `[T, T]`
    average, the same numbers to float rounding; the initial weights are
    Keras', not PyTorch's defaults.

    Returns:
        A functional `keras.Model` from int32 sequences `[batch, length]` to
        logits at every position `[batch, length, vocab_size]`.

    Example:

    >>> build_bow(27, 16).count_params()
    12827
    """
    import keras

    from keras_makemore.models.keras_model import initializers
    from keras_makemore.models.layers import CausalMean, PositionEmbedding

    init = initializers(seed)
    tokens = keras.Input(shape=(length,), dtype="int32", name="sequence")
    x = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init("RandomUniform", minval=-0.05,
                                                                                   maxval=0.05),
                               name=EMBEDDING_LAYER)(tokens)
    x = PositionEmbedding(length, init("RandomUniform", minval=-0.05, maxval=0.05), name="position_embedding")(x)
    x = keras.layers.Add(name="with_context")([x, CausalMean(name="causal_mean")(x)])
    h = keras.layers.Dense(hidden_units, activation="tanh", kernel_initializer=init("GlorotUniform"), name="hidden")(x)
    h = keras.layers.Dense(embed_dim, kernel_initializer=init("GlorotUniform"), name="project")(h)
    x = keras.layers.Add(name="with_mlp")([x, h])
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(x)
    return keras.Model(tokens, logits, name=keras_name("bow"))


def _count(c: TrainConfig, vocab_size: int, length: int) -> int:
    e, h = c.embed_dim, c.hidden_units
    return (vocab_size + length) * e + e * h + h + h * e + e + e * vocab_size + vocab_size


def initial_state(model: keras.Model, batch, compact: bool = False) -> tuple:
    """The running sum of the word's vectors so far: zeros `[batch, embed_dim]`."""
    import tensorflow as tf

    return (tf.zeros([batch, model.get_layer(EMBEDDING_LAYER).output_dim]),)


def decode_step(model: keras.Model, token, position, state, compact: bool = False) -> tuple:
    """One position: add its vector to the running sum, divide by the count for the causal mean, then the MLP."""
    import tensorflow as tf

    table = model.get_layer("position_embedding").embeddings
    x = model.get_layer(EMBEDDING_LAYER)(token) + tf.gather(tf.convert_to_tensor(table), position)[None]
    total = state[0] + x
    x = x + total / tf.cast(position + 1, tf.float32)
    x = x + model.get_layer("project")(model.get_layer("hidden")(x))
    return model.get_layer("logits")(x), (total,)


PRESETS = {"bow": dict(embed_dim=64, hidden_units=64, batch_size=64, steps=6_000, eval_every=1_500,
                       optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.01)}


MODEL = ModelType(
    name="bow",
    summary="Embedding + position -> x + causal mean of x -> x + MLP(tanh) -> Dense (makemore.py's BoW)",
    context=WORD,
    hyperparameters={"embed_dim": "embedding size", "hidden_units": "MLP"},
    build=lambda c, vocab_size, length: build_bow(vocab_size, length, c.embed_dim, c.hidden_units, seed=c.seed),
    count_parameters=_count,
    presets=PRESETS,
    search_space={"embed_dim": (32, 64, 128), "hidden_units": (32, 64, 128)},
    initial_state=initial_state,
    decode_step=decode_step,
)
