"""`bigram`: a table of next-character logits per character (makemore part 1; makemore.py's `Bigram`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from keras_makemore.training.config import TrainConfig

from keras_makemore.errors import UserError
from keras_makemore.models.base import EMBEDDING_LAYER, WINDOW, ModelType, keras_name


def build_bigram(vocab_size: int) -> keras.Model:
    """Build the bigram model: the logits of the next token are the row of the last token in a `[V, V]` table.

    The table starts at zeros (every next token equally likely), as in makemore.py.

    Args:
        vocab_size: number of tokens, the marker included.

    Returns:
        A functional `keras.Model` from int32 contexts `[batch, 1]` to logits `[batch, vocab_size]`.

    Example:

    >>> build_bigram(27).count_params()
    729
    """
    import keras

    contexts = keras.Input(shape=(1,), dtype="int32", name="context")
    rows = keras.layers.Embedding(vocab_size, vocab_size, embeddings_initializer="zeros", name=EMBEDDING_LAYER)(contexts)
    logits = keras.layers.Flatten(name="logits")(rows)
    return keras.Model(contexts, logits, name=keras_name("bigram"))


def _check(config: TrainConfig) -> None:
    if config.block_size != 1:
        raise UserError(f"block_size must be 1 for model bigram (it sees the last character only), "
                        f"got {config.block_size}", argument="block_size")


PRESETS = {"bigram": dict(block_size=1, batch_size=128, steps=2_000, eval_every=500,
                          optimizer="adam", lr=0.1, lr_schedule="cosine")}


MODEL = ModelType(
    name="bigram",
    summary="a [V, V] table of next-character logits, one row per character (makemore part 1)",
    context=WINDOW,
    hyperparameters={"block_size": "characters of context (1)"},
    build=lambda c, vocab_size, block_size: build_bigram(vocab_size),
    count_parameters=lambda c, vocab_size, block_size: vocab_size * vocab_size,
    presets=PRESETS,
    search_space={},  # a table of V x V logits: only the optimizer's rows
    check=_check,
)
