"""The contract every model of the zoo meets, and the only way the rest of keras-makemore reaches a model.

A model type (`ModelType`) is one of two kinds:

- a *window* model maps the last `block_size` token ids, `[batch, block_size]`
  (marker-padded before the word's start), to next-token logits `[batch, V]`:
  `mlp`, `bigram` (block 1), `wavenet`. It trains on the windows of
  `Corpus.examples`.
- a *word* model sees the whole word so far: it maps a sequence `[batch, T]`
  (the marker as start token, the characters, marker padding on the right) to
  logits at every position, `[batch, T, V]`, causally (position `t` sees
  tokens `0..t` only). `T` is the longest word of the data plus one. It trains
  on every position of a word at once (`word_sequences`), padding ignored by
  the loss: `bow`, `rnn`, `gru`, `transformer`, as in makemore.py.

Both kinds answer the one question sampling, scoring, evaluation and export ask,
through `next_token_logits(model)`: the next-token logits `[batch, V]` of
windows `[batch, block_size]` of the last token ids (for a word model,
`block_size` is `T`). A word model reads such a window by rotating it so
that its last marker (the word's start) comes first, and taking the logits
at the window's last character; a window without a marker (a word longer
than `T - 1`) is read as it is, at its last position, as makemore.py crops
its context. So one sampling graph serves every model on every runtime.

The character embedding of every model is the `keras.layers.Embedding`
named `EMBEDDING_LAYER`; the Keras model of type `name` is named
`keras_name(name)`, which is how a loaded model finds its type again.
"""

import dataclasses
from typing import Callable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.config import MAX_PARAMETERS, TrainConfig
from keras_makemore.data import MARKER_ID, Corpus, Vocabulary, Windows, make_dataset, random_minibatches
from keras_makemore.errors import UserError

WINDOW, WORD = "window", "word"
EMBEDDING_LAYER = "embedding"
IGNORED = -1  # target id of a word sequence's padding positions: no loss


@dataclasses.dataclass(frozen=True)
class ModelType:
    """One architecture of the zoo: what `train` needs to build and feed it.

    Args:
        name: the registry name, `TrainConfig.model`.
        summary: the architecture in one line, for the report.
        context: `WINDOW` or `WORD` (see the module docstring).
        hyperparameters: the `TrainConfig` fields the network reads.
        build: `(config, vocab_size, block_size) -> keras.Model`, the freshly
            initialised network (seeded by `config.seed`), named `keras_name(name)`.
        count_parameters: `(config, vocab_size, block_size) -> int`, the
            parameters `build` makes (trainable or not), computed without building.
        check: `(config) -> None`, a `UserError` for settings the network cannot take.
        serving_logits: optional `(model) -> logits_fn`, a leaner graph of
            `next_token_logits` for the exported artifacts.
        xla_scope: what XLA compiles when training uses it, `engine.fit`'s
            `xla`: `"auto"`, `"loop"` or `"step"`. `"step"` also lets `train`'s
            `xla="auto"` use XLA for the network with dropout.
        packs_words: whether the network keeps words packed end to end in one
            row apart (`TrainConfig.pack_words`): a word model whose tokens
            see only their own word's, from its start marker on.
        decay_exempt: the variables that weight decay leaves alone, as
            `Optimizer.exclude_from_weight_decay(var_names=...)` takes them
            (patterns searched in each variable's name), e.g. the
            LayerNormalization scales and offsets and the biases, as minGPT
            does.
        initial_state: optional `(model, batch, compact=False) -> state`, a
            word model's state before the start marker: a tuple of float32
            tensors `[batch, ...]` of fixed shapes (the RNN's learned start
            state, BoW's zero sum, the Transformer's key/value cache of `T`
            positions). `compact=True` asks for the smallest state, which may
            grow along the word (the Transformer's cache then holds the
            positions fed so far), for `generate`'s loop, which copies its
            state at every step.
        decode_step: optional `(model, token, position, state, compact=False)
            -> (logits, state)`: feed int32 `token` `[batch]` at the word's
            `position` (an int32 scalar, 0 for the start marker, below `T`),
            get the next-token logits `[batch, V]` and the state after it.
            Given both, `generate` carries the state along the word, one step
            per character, instead of rerunning the whole sequence; its logits
            equal the whole-sequence pass's (to float rounding).

    Example:

    >>> from keras_makemore.models import get_model_type
    >>> get_model_type("transformer").context
    'word'
    """

    name: str
    summary: str
    context: str
    hyperparameters: tuple[str, ...]
    build: Callable[[TrainConfig, int, int], keras.Model]
    count_parameters: Callable[[TrainConfig, int, int], int]
    check: Callable[[TrainConfig], None] = lambda config: None
    serving_logits: Callable[[keras.Model], Callable] | None = None
    xla_scope: str = "auto"
    packs_words: bool = False
    decay_exempt: tuple[str, ...] = ()
    initial_state: Callable[..., tuple] | None = None
    decode_step: Callable[..., tuple] | None = None


def keras_name(model_type: str) -> str:
    """The name of the Keras model of `model_type`: `mlp` -> `mlp_language_model`."""
    return f"{model_type}_language_model"


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


# The longest word a word model (bow, rnn, gru, transformer) trains on: its rows are the longest word long, and
# the recurrent models unroll over every position. 20 steps of the gru preset with one word of 64 characters
# among 3,000 names took 246 s and 1.7 GB, of 128 over 600 s and 4.6 GB, of 256 372 s and 9.3 GB (the
# transformer: 133 s, 1.5 GB); 1,023 aborted under an 8 GB cap (2 loaded cores). Window models take any line.
MAX_WORD_LENGTH = 64


def block_size_for(config: TrainConfig, max_word_length: int) -> int:
    """The context length of `config`'s network on data whose longest word has `max_word_length` characters:
    its `block_size`, or a word model's `T`."""
    from keras_makemore.models import get_model_type

    if get_model_type(config.model).context == WINDOW:
        return config.block_size
    if max_word_length > MAX_WORD_LENGTH:
        raise UserError(f"model {config.model} sees whole words, and the longest word of the data has "
                        f"{max_word_length:,} characters, over the limit of {MAX_WORD_LENGTH:,}: remove the long "
                        "lines, or use a window model (mlp, wavenet)", argument="data")
    return max_word_length + 1


def word_sequences(words: list[str], vocab: Vocabulary, length: int) -> tuple[np.ndarray, np.ndarray]:
    """A word model's training examples: inputs and targets, int32 `[n, length]`, one row per word.

    The input row is the marker, then the characters, then marker padding;
    the target row is the characters, the end marker, then `IGNORED`. Words
    longer than `length - 1` characters are cut.

    Example:

    >>> vocab = Vocabulary.from_words(["emma"])
    >>> x, y = word_sequences(["emma"], vocab, 6)
    >>> x.tolist(), y.tolist()
    ([[0, 2, 3, 3, 1, 0]], [[2, 3, 3, 1, 0, -1]])
    """
    return _rows([[ids] for ids in _encoded(words, vocab, length)], length)


def packed_word_sequences(words: list[str], vocab: Vocabulary, length: int) -> tuple[np.ndarray, np.ndarray]:
    """A packing word model's training examples: `word_sequences` of the words, packed end to end in fewer rows.

    Each word takes its characters' positions and one more (the start marker
    in the input, the end marker in the target), and never leaves its row.
    Rows are filled best fit, longest word first: on the names' training
    split, 25,626 words fill 12,293 rows of 16 positions, 93% of them, where
    one word a row fills 45%. A model that keeps packed words apart
    (`ModelType.packs_words`) gives every word the loss it would have alone.

    Example:

    >>> vocab = Vocabulary.from_words(["emma", "al"])
    >>> x, y = packed_word_sequences(["emma", "al"], vocab, 8)
    >>> x.tolist(), y.tolist()
    ([[0, 2, 4, 4, 1, 0, 1, 3]], [[2, 4, 4, 1, 0, 1, 3, 0]])
    """
    encoded = _encoded(words, vocab, length)
    rows: list[list[list[int]]] = []
    rows_with_room: list[list[int]] = [[] for _ in range(length)]  # row indices by free positions (< length)
    for ids in sorted(encoded, key=len, reverse=True):
        size = len(ids) + 1
        room = next((free for free in range(size, length) if rows_with_room[free]), None)
        if room is None:
            row, room = len(rows), length
            rows.append([])
        else:
            row = rows_with_room[room].pop()
        rows[row].append(ids)
        rows_with_room[room - size].append(row)
    return _rows(rows, length)


def _encoded(words: list[str], vocab: Vocabulary, length: int) -> list[list[int]]:
    return [vocab.encode(word)[:length - 1] for word in words]


def _rows(rows: list[list[list[int]]], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and target rows of words given as their ids, each row's words end to end."""
    x = np.full((len(rows), length), MARKER_ID, np.int32)
    y = np.full((len(rows), length), IGNORED, np.int32)
    for i, row in enumerate(rows):
        start = 0
        for ids in row:
            end = start + len(ids)
            x[i, start + 1:end + 1] = ids
            y[i, start:end] = ids
            y[i, end] = MARKER_ID
            start = end + 1
    return x, y


class WordSequences:
    """A word model's examples of one split, with the methods of `data.Windows` that training reads.

    Args:
        x, y: `word_sequences` of the split's words.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def random_minibatches(self, batch_size: int, seed: int, steps: int, first_step: int = 0) -> tf.data.Dataset:
        """The lecture's minibatches of words; see `data.random_minibatches`."""
        return random_minibatches(self.x, self.y, batch_size, seed, steps, first_step)

    def batches(self, batch_size: int, max_examples: int | None = None) -> tf.data.Dataset:
        """The words in order (only `max_examples` of them, spread evenly, if set), for evaluation."""
        x, y = self.x, self.y
        if max_examples is not None and max_examples < len(x):
            keep = np.arange(max_examples) * len(x) // max_examples
            x, y = x[keep], y[keep]
        return make_dataset(x, y, batch_size=batch_size, shuffle=False)


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


def count_parameters(config: TrainConfig, vocab_size: int, block_size: int) -> int:
    """The parameters of the network `config` builds for `vocab_size` tokens and context `block_size`."""
    from keras_makemore.models import get_model_type

    return get_model_type(config.model).count_parameters(config, vocab_size, block_size)


def check_model_size(config: TrainConfig, vocab_size: int, block_size: int) -> None:
    """A `UserError` when `config`'s network would have more than `MAX_PARAMETERS` parameters."""
    params = count_parameters(config, vocab_size, block_size)
    if params > MAX_PARAMETERS:
        from keras_makemore.models import get_model_type

        fields = get_model_type(config.model).hyperparameters
        sizes = [f"{name} {getattr(config, name)}" for name in ("hidden_units", "embed_dim", "block_size", "layers")
                 if name in fields] if "hidden_units" in fields else [f"a vocabulary of {vocab_size:,} tokens"]
        raise UserError(
            f"{' with '.join(sizes[:2]) + ''.join(' and ' + s for s in sizes[2:])} "
            f"would make {params:,} parameters for model {config.model} ({params * 4 / 2**30:.1f} GiB of float32 "
            f"weights), over the limit of {MAX_PARAMETERS:,}: make them smaller",
            argument="hidden_units" if "hidden_units" in fields else "data")


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


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0
