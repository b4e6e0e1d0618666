"""A built Keras model of the zoo: its type, shape, loss, embedding table and next-token logits.

Both kinds of model type answer the one question sampling, scoring, evaluation
and export ask, through `next_token_logits(model)`: the next-token logits
`[batch, V]` of windows `[batch, block_size]` of the last token ids (for a word
model, `block_size` is `T`). A word model reads such a window by rotating it so
that its last marker (the word's start) comes first, and taking the logits at
the window's last character; a window without a marker (a word longer than
`T - 1`) is read as it is, at its last position, as makemore.py crops its
context. So one sampling graph serves every model on every runtime.

The character embedding of every model is the `keras.layers.Embedding` named
`EMBEDDING_LAYER`; the Keras model of type `name` is named `keras_name(name)`,
which is how a loaded model finds its type again.
"""

from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.data.corpus import Corpus
from keras_makemore.data.vocabulary import MARKER_ID
from keras_makemore.data.windows import Windows
from keras_makemore.data.words import WordSequences, packed_word_sequences, word_sequences
from keras_makemore.models.base import EMBEDDING_LAYER, IGNORED, WINDOW, WORD, ModelType, keras_name


def model_type_of(model: keras.Model) -> ModelType | None:
    """The zoo's `ModelType` of a Keras model, read from its name; `None` for a model of other origin."""
    from keras_makemore.models import REGISTRY, get_model_type

    name = model.name.removesuffix("_language_model")
    return get_model_type(name) if name in REGISTRY and model.name == keras_name(name) else None


def is_word_model(model: keras.Model) -> bool:
    model_type = model_type_of(model)
    return model_type is not None and model_type.context == WORD


def model_shape(model: keras.Model) -> dict[str, int]:
    """`vocab_size` and `block_size` (the context a sampler feeds it) of any model of the zoo."""
    return {"vocab_size": int(model.output_shape[-1]), "block_size": int(model.input_shape[1])}


def embedding_table(model: keras.Model) -> np.ndarray:
    """The character embeddings `[vocab_size, dim]`: the weights of the model's `EMBEDDING_LAYER`."""
    return model.get_layer(EMBEDDING_LAYER).get_weights()[0]


def training_examples(model_type: ModelType, corpus: Corpus, split: str,
                      pack_words: bool = False) -> "Windows | WordSequences":
    """What `model_type` trains on: a window model the corpus' `Windows`, a word model its `WordSequences`
    (with `pack_words`, its `packed_word_sequences`)."""
    if model_type.context == WINDOW:
        return corpus.windows(split)
    rows = packed_word_sequences if pack_words else word_sequences
    return WordSequences(*rows(corpus.split[split], corpus.vocab, corpus.block_size))


def loss(model_type: ModelType) -> keras.losses.Loss:
    """The mean NLL per predicted token; a word model's padding positions are not counted."""
    ignore = IGNORED if model_type.context == WORD else None
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)


# Called inside traced functions too (sampling, scoring, evaluation): the registry lookup behind it imports a
# module, which AutoGraph cannot convert and would warn about on stderr.
@tf.autograph.experimental.do_not_convert
def next_token_logits(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`context -> logits`: int32 windows `[batch, block_size]` to next-token logits `[batch, V]`, in inference mode.

    A model from outside the zoo is taken to be a window model.
    """
    if not is_word_model(model):
        return lambda context: model(context, training=False)

    def logits_fn(context):
        sequences, positions = _sequences_of_windows(tf.cast(context, tf.int32))
        return tf.gather(model(sequences, training=False), positions, batch_dims=1)

    return logits_fn


def serving_logits(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`next_token_logits` as the model type's leanest graph, for the exported artifacts."""
    model_type = model_type_of(model)
    if model_type is not None and model_type.serving_logits is not None:
        return model_type.serving_logits(model)
    return next_token_logits(model)


class Decoder(NamedTuple):
    """A model fed one token at a time, its state carried between calls (see `decoder`).

    `initial_state(batch)` gives the state before the first token (a tuple of
    tensors `[batch, ...]`); `step(token, position, state)` takes int32 tokens
    `[batch]` at int32 scalar `position` and gives `(logits [batch, V], state)`.
    `length` is the positions it takes: `0 .. length - 1`.
    """

    initial_state: Callable[[tf.Tensor], tuple]
    step: Callable[[tf.Tensor, tf.Tensor, tuple], tuple]
    length: int


def decoder(model: keras.Model, compact: bool = False) -> Decoder:
    """`model` fed one token at a time: a word model's own `decode_step`, or a window model through its window.

    A window model's state is its window, int32 `[batch, block_size]`: each
    step shifts the token in and runs the model on it. A word model's steps
    give the logits of its whole-sequence pass at each position of a word;
    its `length` is `T`, and a word longer than `T - 1` characters goes on
    through `next_token_logits` on the last `T` tokens (as makemore.py crops).
    `compact`: the state `generate`'s loop carries (see `ModelType.initial_state`).
    """
    model_type = model_type_of(model)
    block_size = model_shape(model)["block_size"]
    if model_type is not None and model_type.decode_step is not None:
        return Decoder(lambda batch: tuple(model_type.initial_state(model, batch, compact=compact)),
                       lambda token, position, state: model_type.decode_step(model, token, position, tuple(state),
                                                                             compact=compact),
                       block_size)
    logits_fn = next_token_logits(model)

    def step(token, position, state):
        (window,) = state
        window = tf.concat([window[:, 1:], tf.cast(token, tf.int32)[:, None]], axis=1)
        return logits_fn(window), (window,)

    return Decoder(lambda batch: (tf.zeros([batch, block_size], tf.int32),), step, 2**31 - 1)


def _sequences_of_windows(context: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A word model's input rows for windows of the last tokens, and the position to read in each.

    A window `. . . e m m` becomes `. e m m . .`, read at position 3: it is
    rotated left by the position of its last marker (0 if it has none).
    Positions after the one read hold the rotated-in markers, which a causal
    model does not look at.
    """
    length = context.shape[1]
    columns = tf.range(length)
    last_marker = tf.reduce_max(tf.where(tf.equal(context, MARKER_ID), columns[None, :], 0), axis=1)
    sequences = tf.gather(context, (columns[None, :] + last_marker[:, None]) % length, batch_dims=1)
    return sequences, length - 1 - last_marker


def initializers(seed: int | None) -> Callable[[str], keras.initializers.Initializer]:
    """`make(kind)`: Keras initializers of `kind`, each with its own seed derived from `seed` (None: unseeded).

    Every weight gets a different seed, so the same `seed` builds the same
    network without touching a global generator.
    """
    counter = iter(range(10**9))

    def make(kind: str, **kwargs) -> keras.initializers.Initializer:
        return keras.initializers.get({"class_name": kind,
                                       "config": {"seed": None if seed is None else seed + next(counter), **kwargs}})

    return make
