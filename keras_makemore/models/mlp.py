"""`mlp`: the MLP language model of Bengio et al. 2003, as in makemore part 2 (the default model)."""

import keras
import tensorflow as tf

from keras_makemore.config import TrainConfig
from keras_makemore.models.base import EMBEDDING_LAYER, WINDOW, ModelType, keras_name


def build_model(
    vocab_size: int,
    block_size: int = 3,
    embed_dim: int = 10,
    hidden_units: int = 200,
    dropout: float = 0.0,
    direct_connections: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """Build `Embedding -> Flatten -> Dense(tanh) -> Dense`, mapping contexts to next-token logits.

    Args:
        vocab_size: number of tokens, the marker included.
        block_size: characters of context the model sees.
        embed_dim: size of each character's embedding vector (the lecture's `C`).
        hidden_units: width of the tanh hidden layer.
        dropout: rate of dropout on the hidden layer's output during training (0: none).
        direct_connections: add Bengio et al.'s direct embedding-to-output
            connections (the dotted lines in the paper's figure 1):
            `logits = W2 tanh(W1 x + b1) + W3 x + b2`.
        seed: seed of the initial weights and of dropout: the same seed
            builds the same weights, without touching any global generator.
            `None` draws them from Keras' global generator.

    Returns:
        A functional `keras.Model` from int32 contexts `[batch, block_size]` to
        logits `[batch, vocab_size]`; apply a softmax for probabilities.

    Where it differs from its sources on purpose: it is the lecture's
    (part 2) network, whose contexts before a word's start hold the marker;
    makemore.py's `MLP` embeds a separate blank token there (`vocab_size + 1`
    embeddings). The initial weights are Keras' (embeddings uniform in
    +-0.05, Glorot-uniform kernels), not the lecture's scaled normals.

    Example:

    >>> model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=200)
    >>> model.count_params()
    11897
    """
    # Keras' default initializers, each with its own seed derived from `seed`.
    seeds = [None] * 5 if seed is None else [seed + i for i in range(5)]
    contexts = keras.Input(shape=(block_size,), dtype="int32", name="context")
    emb = keras.layers.Embedding(vocab_size, embed_dim, name=EMBEDDING_LAYER,
                                 embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seeds[0]))(contexts)
    x = keras.layers.Flatten(name="concat")(emb)
    h = keras.layers.Dense(hidden_units, activation="tanh", name="hidden",
                           kernel_initializer=keras.initializers.GlorotUniform(seeds[1]))(x)
    if dropout:
        h = keras.layers.Dropout(dropout, name="dropout", seed=seeds[2])(h)
    logits = keras.layers.Dense(vocab_size, name="logits", kernel_initializer=keras.initializers.GlorotUniform(seeds[3]))(h)
    if direct_connections:
        direct = keras.layers.Dense(vocab_size, use_bias=False, name="direct",
                                    kernel_initializer=keras.initializers.GlorotUniform(seeds[4]))(x)
        logits = keras.layers.Add(name="logits_with_direct")([logits, direct])
    return keras.Model(contexts, logits, name=keras_name("mlp"))


def model_shape(model: keras.Model) -> dict[str, int]:
    """Read `vocab_size`, `block_size`, `embed_dim` and `hidden_units` back off a built model."""
    embedding = model.get_layer(EMBEDDING_LAYER)
    layers = {layer.name for layer in model.layers}
    return {
        "vocab_size": int(embedding.input_dim),
        "block_size": int(model.input_shape[1]),
        "embed_dim": int(embedding.output_dim),
        "hidden_units": int(model.get_layer("hidden").units),
        "dropout": float(model.get_layer("dropout").rate) if "dropout" in layers else 0.0,
        "direct_connections": "direct" in layers,
    }


def serving_logits(model: keras.Model):
    """`model`'s forward pass as the fewest graph ops: a plain gather and a fixed-width reshape.

    Keras' `Embedding` wraps negative ids and its `Flatten` reads the batch
    size at run time; in LiteRT those six extra ops cost a one-context call
    more than its two dense layers do. Token ids are never negative, so the
    logits are the same.
    """
    table = model.get_layer(EMBEDDING_LAYER).embeddings
    flattened = model.get_layer("concat").output
    after_flatten = keras.Model(flattened, model.output)

    def logits_fn(context):
        return after_flatten(tf.reshape(tf.gather(table, context), [-1, flattened.shape[-1]]), training=False)

    return logits_fn


def count_parameters(config: TrainConfig, vocab_size: int, block_size: int) -> int:
    c, inputs = config, block_size * config.embed_dim
    direct = inputs * vocab_size if c.direct_connections else 0
    return vocab_size * c.embed_dim + inputs * c.hidden_units + c.hidden_units + c.hidden_units * vocab_size \
        + vocab_size + direct


MODEL = ModelType(
    name="mlp",
    summary="Embedding -> Flatten -> Dense(tanh) -> Dense (Bengio et al. 2003; makemore part 2)",
    context=WINDOW,
    hyperparameters=("block_size", "embed_dim", "hidden_units", "dropout", "direct_connections"),
    build=lambda c, vocab_size, block_size: build_model(
        vocab_size, block_size, c.embed_dim, c.hidden_units, dropout=c.dropout,
        direct_connections=c.direct_connections, seed=c.seed),
    count_parameters=count_parameters,
    serving_logits=serving_logits,
)
