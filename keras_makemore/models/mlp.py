"""`mlp`: the MLP language model of Bengio et al. 2003, as in makemore part 2 (the default model)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

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
    import keras

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
    import keras
    import tensorflow as tf

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


# `train`'s default, `lecture`, is the lecture's network (block 3, embedding 10, hidden 200) with a faster recipe
# than the lecture's batch-32 step schedule (TrainConfig's defaults): batch 128 and a cosine decay reach a lower
# val loss in less time. `mlp-best`: a flat MLP tuned on the val split (8 characters of context, a wider embedding
# and hidden layer, dropout and decoupled weight decay), under 10 minutes of training on 2 cores; XLA on measured
# 1.07x for it; val 1.9923. `quick`: the lecture's MLP widened (context 5, embedding 32) at batch 256, val 2.0208 in
# about 30 s, found by `keras-makemore tune --model mlp --budget 15m` (docs/tune.md).
PRESETS = {
    "lecture": dict(block_size=3, embed_dim=10, hidden_units=200, batch_size=128, steps=150_000,
                    optimizer="sgd", lr=0.2, lr_schedule="cosine"),
    "mlp-best": dict(block_size=8, embed_dim=32, hidden_units=768, dropout=0.1, batch_size=256, steps=95_000,
                     eval_every=19_000, optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.05,
                     xla="on"),
    "quick": dict(block_size=5, embed_dim=32, hidden_units=200, batch_size=256, steps=40_000, eval_every=4_000,
                  optimizer="sgd", lr=0.2, lr_schedule="cosine"),
}

# The MLP's search keeps absolute batch and step rows: it aims at the fastest run to a val loss (a `quick`
# preset, <= 60 s of training), not at the 150,000 steps of `lecture`.
SEARCH_SPACE = {"block_size": (3, 4, 5, 6, 8), "embed_dim": (8, 10, 16, 24, 32),
                "hidden_units": (100, 200, 300, 500, 800), "batch_size": (32, 64, 128, 256),
                "steps": (5_000, 10_000, 20_000, 40_000)}


def _build(config: TrainConfig, vocab_size: int, block_size: int) -> keras.Model:
    return build_model(vocab_size, block_size, config.embed_dim, config.hidden_units, dropout=config.dropout,
                       direct_connections=config.direct_connections, seed=config.seed)


MODEL = ModelType(
    name="mlp",
    summary="Embedding -> Flatten -> Dense(tanh) -> Dense (Bengio et al. 2003; makemore part 2)",
    context=WINDOW,
    hyperparameters={"block_size": "characters of context", "embed_dim": "embedding size",
                     "hidden_units": "the tanh layer", "dropout": "on the hidden layer",
                     "direct_connections": "Bengio's embedding-to-output connections"},
    build=_build,
    count_parameters=count_parameters,
    presets=PRESETS,
    search_space=SEARCH_SPACE,
    serving_logits=serving_logits,
)
