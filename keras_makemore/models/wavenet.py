"""`wavenet`: makemore part 5's hierarchical model, pairs of consecutive characters fused level by level."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.errors import UserError
from keras_makemore.models.base import EMBEDDING_LAYER, WINDOW, ModelType, is_power_of_two, keras_name


def build_wavenet(vocab_size: int, block_size: int = 8, embed_dim: int = 24, hidden_units: int = 128,
                  seed: int | None = None) -> keras.Model:
    """Build part 5's WaveNet-like tree: at each level, concatenate pairs of neighbours, `Dense -> BatchNorm -> tanh`.

    With `block_size` 8 there are three levels (8 -> 4 -> 2 -> 1 positions), as
    in the lecture, whose network (embedding 24, hidden 128) has 76,579
    trainable parameters; Keras also counts BatchNorm's moving mean and
    variance (768 more). BatchNorm normalises over the batch and the positions,
    as the lecture's fixed `BatchNorm1d` does, with its momentum of 0.1 (0.9 in
    Keras' convention).

    Where it differs from the lecture on purpose: Keras' BatchNormalization
    divides the batch variance by n, in training and in its moving variance;
    the lecture's `torch.var` divides by n - 1 (unbiased). The initial
    weights are Keras', not the lecture's scaled normals.

    Args:
        vocab_size: number of tokens, the marker included.
        block_size: characters of context, a power of two (2 or more).
        embed_dim: size of each character's embedding.
        hidden_units: width of every level.
        seed: seed of the initial weights (None: Keras' global generator).

    Returns:
        A functional `keras.Model` from int32 contexts `[batch, block_size]` to logits `[batch, vocab_size]`.

    Example:

    >>> sum(w.numpy().size for w in build_wavenet(27).trainable_weights)
    76579
    """
    import keras

    from keras_makemore.models.keras_model import initializers

    if block_size < 2 or not is_power_of_two(block_size):
        raise ValueError(f"block_size must be a power of two, 2 or more, got {block_size}")
    init = initializers(seed)
    contexts = keras.Input(shape=(block_size,), dtype="int32", name="context")
    x = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init("RandomUniform", minval=-0.05,
                                                                                   maxval=0.05),
                               name=EMBEDDING_LAYER)(contexts)
    width, level = block_size, 0
    while width > 1:
        width, level = width // 2, level + 1
        x = keras.layers.Reshape((width, 2 * x.shape[-1]) if width > 1 else (2 * x.shape[-1],), name=f"pairs{level}")(x)
        x = keras.layers.Dense(hidden_units, use_bias=False, kernel_initializer=init("GlorotUniform"),
                               name=f"fuse{level}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"batchnorm{level}")(x)
        x = keras.layers.Activation("tanh", name=f"tanh{level}")(x)
    logits = keras.layers.Dense(vocab_size, kernel_initializer=init("GlorotUniform"), name="logits")(x)
    return keras.Model(contexts, logits, name=keras_name("wavenet"))


def _count(c: TrainConfig, vocab_size: int, block_size: int) -> int:
    levels = block_size.bit_length() - 1
    first, later = 2 * c.embed_dim * c.hidden_units, 2 * c.hidden_units * c.hidden_units
    return (vocab_size * c.embed_dim + first + (levels - 1) * later + levels * 4 * c.hidden_units
            + c.hidden_units * vocab_size + vocab_size)


def _check(config: TrainConfig) -> None:
    if config.block_size < 2 or not is_power_of_two(config.block_size):
        raise UserError(f"block_size must be a power of two for model wavenet (2, 4, 8, 16, ...), "
                        f"got {config.block_size}", argument="block_size")


PRESETS = {"wavenet": dict(block_size=8, embed_dim=24, hidden_units=128, batch_size=128,
                           steps=20_000, eval_every=5_000, optimizer="adamw", lr=3e-3, lr_schedule="cosine",
                           weight_decay=0.05)}


MODEL = ModelType(
    name="wavenet",
    summary="Embedding -> (pairs -> Dense -> BatchNorm -> tanh) x log2(block) -> Dense (makemore part 5)",
    context=WINDOW,
    hyperparameters={"block_size": "characters of context", "embed_dim": "embedding size",
                     "hidden_units": "the tanh layer"},
    build=lambda c, vocab_size, block_size: build_wavenet(vocab_size, block_size, c.embed_dim, c.hidden_units,
                                                          seed=c.seed),
    count_parameters=_count,
    presets=PRESETS,
    search_space={"block_size": (4, 8, 16), "embed_dim": (12, 24, 48), "hidden_units": (64, 128, 256)},
    check=_check,
)
