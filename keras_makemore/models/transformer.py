"""`transformer`: makemore.py's decoder-only Transformer: causal self-attention, pre-norm blocks, learned positions."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.data.vocabulary import MARKER_ID
from keras_makemore.errors import UserError
from keras_makemore.models.base import EMBEDDING_LAYER, WORD, ModelType, keras_name


def build_transformer(vocab_size: int, length: int, embed_dim: int = 64, hidden_units: int = 256, layers: int = 4,
                      heads: int = 4, dropout: float = 0.0, seed: int | None = None,
                      packed_words: bool = False) -> keras.Model:
    """Build makemore.py's `Transformer`: `layers` blocks of `x + attn(ln(x))`, `x + mlp(ln(x))`, then `ln`, `Dense`.

    makemore.py's defaults (embedding 64, 4 layers, 4 heads, MLP 4 x 64 = 256)
    make 204,571 parameters on names (27 tokens, 16 positions); makemore.py's
    own makes 204,544, its output layer having no bias.

    Where it differs from makemore.py on purpose: each block's MLP uses the
    exact GELU where makemore.py's uses its tanh approximation; the output
    layer has a bias; the initial weights are Keras' (Glorot-uniform kernels,
    embeddings uniform in +-0.05), not minGPT's normals of standard deviation
    0.02; `dropout` and `packed_words` are options makemore.py does not have
    (off, the same network).

    Args:
        vocab_size: number of tokens, the marker included.
        length: positions per word sequence (`T`: the longest word plus one).
        embed_dim: width of the residual stream (`n_embd`); a multiple of `heads`.
        hidden_units: width of each block's GELU MLP (makemore.py: `4 * n_embd`).
        layers: the blocks (`n_layer`).
        heads: attention heads per block (`n_head`).
        dropout: rate of dropout on the embeddings and on each residual branch (0: none, as in makemore.py).
        seed: seed of the initial weights and of dropout (None: Keras' global generator).
        packed_words: read where words start from the input (`WordBoundaries`),
            so that words packed end to end in one row stay apart: to train on
            `packed_word_sequences`. It computes the same function on rows of
            one word; without it the mask is the plain causal one, as makemore.py's.

    Returns:
        A functional `keras.Model` from int32 sequences `[batch, length]` to
        logits at every position `[batch, length, vocab_size]`.

    Example:

    >>> build_transformer(27, 16).count_params()
    204571
    """
    import keras

    from keras_makemore.models.keras_model import initializers
    from keras_makemore.models.layers import CausalSelfAttention, PositionEmbedding, WordBoundaries

    init = initializers(seed)
    drop_seeds = itertools.count(0 if seed is None else seed)

    def dropped(x, name):
        if not dropout:
            return x
        return keras.layers.Dropout(dropout, seed=None if seed is None else next(drop_seeds), name=name)(x)

    tokens = keras.Input(shape=(length,), dtype="int32", name="sequence")
    x = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init("RandomUniform", minval=-0.05,
                                                                                   maxval=0.05),
                               name=EMBEDDING_LAYER)(tokens)
    bias, positions = WordBoundaries(MARKER_ID, name="word_boundaries")(tokens) if packed_words else (None, None)
    x = PositionEmbedding(length, init("RandomUniform", minval=-0.05, maxval=0.05),
                          name="position_embedding")(x, positions=positions)
    x = dropped(x, "embedding_dropout")
    for i in range(1, layers + 1):
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm1")(x)
        h = CausalSelfAttention(heads, init("GlorotUniform"), name=f"block{i}_attention")(h, bias=bias)
        x = keras.layers.Add(name=f"block{i}_add1")([x, dropped(h, f"block{i}_dropout1")])
        h = keras.layers.LayerNormalization(epsilon=1e-5, name=f"block{i}_norm2")(x)
        h = keras.layers.Dense(hidden_units, activation="gelu", kernel_initializer=init("GlorotUniform"),
                               name=f"block{i}_mlp")(h)
        h = keras.layers.Dense(embed_dim, kernel_initializer=init("GlorotUniform"), name=f"block{i}_project")(h)
        x = keras.layers.Add(name=f"block{i}_add2")([x, dropped(h, f"block{i}_dropout2")])
    x = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(x)
    return keras.Model(tokens, logits, name=keras_name("transformer"))


def _count(c: TrainConfig, vocab_size: int, length: int) -> int:
    e, h = c.embed_dim, c.hidden_units
    block = 2 * e + (3 * e * e + 3 * e) + (e * e + e) + 2 * e + (e * h + h) + (h * e + e)
    return (vocab_size + length) * e + c.layers * block + 2 * e + e * vocab_size + vocab_size


def _blocks(model: keras.Model) -> int:
    return sum(layer.name.endswith("_attention") for layer in model.layers)


def initial_state(model: keras.Model, batch, compact: bool = False) -> tuple:
    """Each block's key and value cache, `[batch, heads, positions, embed_dim / heads]`: keys, values, block by block.

    The cache holds `T` positions (zeros), or with `compact` none yet: it then
    grows by one position a step.
    """
    import tensorflow as tf

    attention = model.get_layer("block1_attention")
    length, dim = model.input_shape[1], model.get_layer(EMBEDDING_LAYER).output_dim
    zeros = tf.zeros([batch, attention.heads, 0 if compact else length, dim // attention.heads])
    return (zeros,) * (2 * _blocks(model))


def decode_step(model: keras.Model, token, position, state, compact: bool = False) -> tuple:
    """One new position: every block attends to the cached keys and values of the earlier ones and adds its own."""
    import tensorflow as tf

    table = model.get_layer("position_embedding").embeddings
    x = model.get_layer(EMBEDDING_LAYER)(token) + tf.gather(tf.convert_to_tensor(table), position)[None]
    cache = []
    for i in range(1, _blocks(model) + 1):
        h = model.get_layer(f"block{i}_norm1")(x)
        h, keys, values = model.get_layer(f"block{i}_attention").decode(
            h, None if compact else position, *state[2 * i - 2:2 * i])
        cache += [keys, values]
        x = x + h
        h = model.get_layer(f"block{i}_mlp")(model.get_layer(f"block{i}_norm2")(x))
        x = x + model.get_layer(f"block{i}_project")(h)
    return model.get_layer("logits")(model.get_layer("final_norm")(x)), tuple(cache)


# Compiling deeper networks takes minutes before the first step: 16 blocks of width 4 trained 10 steps in 62 s
# (most of it tracing and compiling), 48 blocks in 285 s, and 100 ran out of memory maps (2 loaded cores).
MAX_LAYERS = 16


def _check(config: TrainConfig) -> None:
    if config.layers > MAX_LAYERS:
        raise UserError(f"layers must be at most {MAX_LAYERS} for model transformer (deeper networks take minutes "
                        f"to compile before the first step), got {config.layers:,}", argument="layers")
    if config.embed_dim % config.heads:
        raise UserError(f"embed_dim {config.embed_dim} must be a multiple of heads {config.heads} for model "
                        "transformer: each head takes an equal share", argument="embed_dim")


# `transformer`, the type's own: makemore.py's network and optimizer at its batch of 32 rows, each row holding about
# two words end to end (`pack_words`), dropout 0.2: a step costs what makemore.py's does, so it runs more steps per
# second and is ahead at every wall time (benchmarks/vs_makemore.py); val 1.9247. `best`: the same network one word
# a row at batch 64, dropout 0.15, weight decay 0.1 sparing norms and biases (`decay_exempt`): val 1.9195 after
# 453 s of training on 2 idle cores. docs/models.md has the measurements behind both.
_BEST = dict(embed_dim=64, hidden_units=256, layers=4, heads=4, dropout=0.15,
             batch_size=64, steps=24_000, eval_every=2_000, optimizer="adamw", lr=2e-3, lr_schedule="cosine",
             weight_decay=0.1)
PRESETS = {"transformer": _BEST | dict(pack_words=True, batch_size=32, dropout=0.2), "best": _BEST}

# embed_dim up to 96, not 128: the largest network (6 layers, hidden 512) has 4x the preset's parameters
# (826,203), not 6x.
SEARCH_SPACE = {"embed_dim": (32, 64, 96), "hidden_units": (128, 256, 512), "layers": (2, 4, 6),
                "heads": (2, 4, 8), "dropout": (0.0, 0.1, 0.2)}


MODEL = ModelType(
    name="transformer",
    summary="Embedding + position -> (x + attention(norm x), x + MLP(norm x)) x layers -> norm -> Dense "
            "(makemore.py's Transformer)",
    context=WORD,
    hyperparameters={"embed_dim": "width", "hidden_units": "MLP", "layers": "blocks",
                     "heads": "attention heads per block", "dropout": "embeddings and residual branches",
                     "pack_words": "words packed end to end in a row"},
    build=lambda c, vocab_size, length: build_transformer(vocab_size, length, c.embed_dim, c.hidden_units, c.layers,
                                                          c.heads, c.dropout, seed=c.seed, packed_words=c.pack_words),
    count_parameters=_count,
    presets=PRESETS,
    search_space=SEARCH_SPACE,
    check=_check,
    # Measured (batch 64, dropout 0.1, 2 cores): 48.8 steps/s with XLA compiling each step, 35.8 without XLA;
    # XLA compiling the whole loop ran dropout slower (40.1 against 51.1 steps/s for each step, batch 32).
    xla_scope="step",
    packs_words=True,
    # Weight decay spares the LayerNormalization scales and offsets and the biases, as minGPT does. With the preset
    # (weight decay 0.1, 20,000 steps): val 1.9211, against 1.9255 decaying every variable and 1.9232 sparing the
    # embeddings too, as minGPT also does (docs/models.md).
    decay_exempt=("gamma", "beta", "bias"),
    initial_state=initial_state,
    decode_step=decode_step,
)
