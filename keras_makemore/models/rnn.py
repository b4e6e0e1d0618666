"""`rnn`: makemore.py's vanilla recurrent network: `h = tanh(W [x, h])` along the word."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.models.base import EMBEDDING_LAYER, WORD, ModelType, keras_name

START_LAYER = "start"  # the learned start state; a model saved before it existed starts from zeros


def build_recurrent(cell: str, vocab_size: int, length: int, embed_dim: int = 64, hidden_units: int = 64,
                    seed: int | None = None) -> keras.Model:
    """Build `Embedding -> SimpleRNN or GRU (every position) -> Dense`, as makemore.py's `RNN` with its cells.

    The recurrence starts from a learned state (`LearnedState`, the layer
    `START_LAYER`), zeros at first, as makemore.py's `RNN.start`; at the
    presets' sizes (27 tokens; rnn: embedding 64, hidden 64; gru: embedding
    64, hidden 128) that makes makemore.py's 11,803 and 79,451 parameters.
    The recurrence is unrolled over the `length` positions: a plain graph
    that LiteRT runs with builtin ops, and as fast as Keras' loop at this length.
    The GRU applies its reset gate before the recurrent product
    (`reset_after=False`), as makemore.py's `GRUCell` does.

    Where it differs from makemore.py on purpose: the initial weights are
    Keras' (Glorot-uniform input kernels, orthogonal recurrent kernels,
    embeddings uniform in +-0.05), not PyTorch's defaults; the network
    computes the same function. Runs saved before the start state was learned
    have no `START_LAYER` and start from zeros, as they were trained.

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
    28315
    """
    import keras

    from keras_makemore.models.keras_model import initializers
    from keras_makemore.models.layers import LearnedState

    init = initializers(seed)
    tokens = keras.Input(shape=(length,), dtype="int32", name="sequence")
    x = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init("RandomUniform", minval=-0.05,
                                                                                   maxval=0.05),
                               name=EMBEDDING_LAYER)(tokens)
    weights = dict(kernel_initializer=init("GlorotUniform"), recurrent_initializer=init("Orthogonal"),
                   return_sequences=True, unroll=True, name=cell)
    start = LearnedState(hidden_units, name=START_LAYER)(tokens)
    if cell == "gru":
        h = keras.layers.GRU(hidden_units, reset_after=False, **weights)(x, initial_state=start)
    else:
        h = keras.layers.SimpleRNN(hidden_units, **weights)(x, initial_state=start)
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(h)
    return keras.Model(tokens, logits, name=keras_name(cell))


def initial_state(model: keras.Model, batch, compact: bool = False) -> tuple:
    """The hidden state before the start marker: the learned start state, or zeros for a model saved without it."""
    import tensorflow as tf

    units = _recurrent_layer(model).cell.units
    try:
        start = model.get_layer(START_LAYER).start
    except ValueError:
        return (tf.zeros([batch, units]),)
    return (tf.tile(tf.convert_to_tensor(start), [batch, 1]),)


def decode_step(model: keras.Model, token, position, state, compact: bool = False) -> tuple:
    """One cell step: the embedding of `token` and the hidden state in, the logits and the next hidden state out."""
    x = model.get_layer(EMBEDDING_LAYER)(token)
    h, _ = _recurrent_layer(model).cell(x, [state[0]], training=False)
    return model.get_layer("logits")(h), (h,)


def _recurrent_layer(model: keras.Model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.layers.RNN))


def count_recurrent(gates: int, c: TrainConfig, vocab_size: int) -> int:
    e, h = c.embed_dim, c.hidden_units
    return vocab_size * e + h + gates * (e * h + h * h + h) + h * vocab_size + vocab_size


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
    initial_state=initial_state,
    decode_step=decode_step,
)
