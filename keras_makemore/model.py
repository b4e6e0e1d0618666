"""The MLP language model of Bengio et al. 2003, as in makemore part 2."""

import keras


def build_model(
    vocab_size: int,
    block_size: int = 3,
    embed_dim: int = 10,
    hidden_units: int = 200,
) -> keras.Model:
    """Build `Embedding -> Flatten -> Dense(tanh) -> Dense`, mapping contexts to next-token logits.

    Args:
        vocab_size: number of tokens, the marker included.
        block_size: characters of context the model sees.
        embed_dim: size of each character's embedding vector (the lecture's `C`).
        hidden_units: width of the tanh hidden layer.

    Returns:
        A functional `keras.Model` from int32 contexts `[batch, block_size]` to
        logits `[batch, vocab_size]`; apply a softmax for probabilities.

    Example:

    >>> model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=200)
    >>> model.count_params()
    11897
    """
    contexts = keras.Input(shape=(block_size,), dtype="int32", name="context")
    emb = keras.layers.Embedding(vocab_size, embed_dim, name="embedding")(contexts)
    x = keras.layers.Flatten(name="concat")(emb)
    x = keras.layers.Dense(hidden_units, activation="tanh", name="hidden")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(contexts, logits, name="mlp_language_model")


def model_shape(model: keras.Model) -> dict[str, int]:
    """Read `vocab_size`, `block_size`, `embed_dim` and `hidden_units` back off a built model."""
    embedding = model.get_layer("embedding")
    return {
        "vocab_size": int(embedding.input_dim),
        "block_size": int(model.input_shape[1]),
        "embed_dim": int(embedding.output_dim),
        "hidden_units": int(model.get_layer("hidden").units),
    }
