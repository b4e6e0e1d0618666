"""`rnn`: makemore.py's vanilla recurrent network: `h = tanh(W [x, h])` along the word."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.models.base import EMBEDDING_LAYER, WORD, ModelType, keras_name


def build_recurrent(cell: str, vocab_size: int, length: int, embed_dim: int = 64, hidden_units: int = 64,
                    seed: int | None = None) -> keras.Model:
    """Build `Embedding -> SimpleRNN or GRU (every position) -> Dense`, as makemore.py's `RNN` with its cells.

    The recurrence is unrolled over the `length` positions: a plain graph
    that LiteRT runs with builtin ops, and as fast as Keras' loop at this length.
    The GRU applies its reset gate before the recurrent product
    (`reset_after=False`), as makemore.py's `GRUCell` does.

    Args:
        cell: `"rnn"` or `"gru"`.
        vocab_size: number of tokens, the marker included.
        length: positions per word sequence (`T`: the longest word plus one).
        embed_dim: size of each character's embedding (`n_embd`).
        hidden_units: size of the hidden state (`n_embd2`).
        seed: seed of the initial weights (None: Keras' global generator).

    Returns:
        A functional `keras.Model` from int32 sequences `[batch, length]` to
        logits at every position `[batch, length, vocab_size]`.

    Example:

    >>> build_recurrent("gru", 27, 16).count_params()
    28251
    """
    import keras

    from keras_makemore.models.keras_model import initializers

    init = initializers(seed)
    tokens = keras.Input(shape=(length,), dtype="int32", name="sequence")
    x = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init("RandomUniform", minval=-0.05,
                                                                                   maxval=0.05),
                               name=EMBEDDING_LAYER)(tokens)
    weights = dict(kernel_initializer=init("GlorotUniform"), recurrent_initializer=init("Orthogonal"),
                   return_sequences=True, unroll=True, name=cell)
    if cell == "gru":
        h = keras.layers.GRU(hidden_units, reset_after=False, **weights)(x)
    else:
        h = keras.layers.SimpleRNN(hidden_units, **weights)(x)
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(h)
    return keras.Model(tokens, logits, name=keras_name(cell))


def count_recurrent(gates: int, c: TrainConfig, vocab_size: int) -> int:
    e, h = c.embed_dim, c.hidden_units
    return vocab_size * e + gates * (e * h + h * h + h) + h * vocab_size + vocab_size


PRESETS = {"rnn": dict(embed_dim=64, hidden_units=64, batch_size=64, steps=6_000, eval_every=1_500,
                       optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.01)}


MODEL = ModelType(
    name="rnn",
    summary="Embedding -> SimpleRNN(tanh) over the word -> Dense (makemore.py's RNN)",
    context=WORD,
    hyperparameters={"embed_dim": "embedding size", "hidden_units": "state"},
    build=lambda c, vocab_size, length: build_recurrent("rnn", vocab_size, length, c.embed_dim, c.hidden_units,
                                                        seed=c.seed),
    count_parameters=lambda c, vocab_size, length: count_recurrent(1, c, vocab_size),
    presets=PRESETS,
    search_space={"embed_dim": (32, 64, 128), "hidden_units": (32, 64, 128)},
)
