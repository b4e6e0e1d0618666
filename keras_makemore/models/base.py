"""The contract every model type of the zoo meets: `ModelType`, and the names and limits they share.

A model type is one of two kinds:

- a *window* model maps the last `block_size` token ids, `[batch, block_size]`
  (marker-padded before the word's start), to next-token logits `[batch, V]`:
  `mlp`, `bigram` (block 1), `wavenet`. It trains on the windows of
  `Corpus.windows`.
- a *word* model sees the whole word so far: it maps a sequence `[batch, T]`
  (the marker as start token, the characters, marker padding on the right) to
  logits at every position, `[batch, T, V]`, causally (position `t` sees
  tokens `0..t` only). `T` is the longest word of the data plus one. It trains
  on every position of a word at once (`keras_makemore.data.words`), padding
  ignored by the loss: `bow`, `rnn`, `gru`, `transformer`, as in makemore.py.

A model type is one module of `keras_makemore.models` that defines `MODEL`,
plus its line in `keras_makemore.models.REGISTRY`. Its `MODEL` holds all there
is to know about it: the network, its parameter count and checks, the
`TrainConfig` fields it reads, its presets and its rows of the `tune` search
space. Flags, help texts, errors and the docs list the model types from the
registry, never by hand.

This module imports no TensorFlow, and the model modules import Keras only
inside their functions: the CLI lists the models, presets and search rows
without loading TensorFlow. `keras_makemore.models.keras_model` is how the rest
of the package reaches a built Keras model of the zoo (logits, loss, shape).
"""

import dataclasses
from typing import Any, Callable, Mapping

from keras_makemore.errors import UserError

WINDOW, WORD = "window", "word"
EMBEDDING_LAYER = "embedding"
IGNORED = -1  # target id of a word sequence's padding positions: no loss
MAX_BLOCK_SIZE = 1024
MAX_PARAMETERS = 200_000_000  # 0.75 GiB of weights; Adam's state triples it
# The longest word a word model trains on: its rows are the longest word long, and the recurrent models unroll
# over every position. 20 steps of the gru preset with one word of 64 characters among 3,000 names took 246 s and
# 1.7 GB, of 128 over 600 s and 4.6 GB, of 256 372 s and 9.3 GB (the transformer: 133 s, 1.5 GB); 1,023 aborted
# under an 8 GB cap (2 loaded cores). Window models take any line.
MAX_WORD_LENGTH = 64


@dataclasses.dataclass(frozen=True)
class ModelType:
    """One architecture of the zoo: what `train`, `tune` and the CLI need to know of it.

    Args:
        name: the registry name, `TrainConfig.model`.
        summary: the architecture in one line, for the report.
        context: `WINDOW` or `WORD` (see the module docstring).
        hyperparameters: the `TrainConfig` fields the network reads, each
            with what it is in this network (the CLI's help joins them).
        build: `(config, vocab_size, block_size) -> keras.Model`, the freshly
            initialised network (seeded by `config.seed`), named `keras_name(name)`.
        count_parameters: `(config, vocab_size, block_size) -> int`, the
            parameters `build` makes (trainable or not), computed without building.
        presets: named `TrainConfig` settings (`train --preset NAME`); the
            first is the model type's own, which `train --model NAME` starts
            from. Each sets `model` to this type unless it is the default type's.
        search_space: this type's rows of `tune`'s search space, field ->
            the values to try, around its own preset.
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
    >>> next(iter(get_model_type("mlp").presets))
    'lecture'
    """

    name: str
    summary: str
    context: str
    hyperparameters: Mapping[str, str]
    build: Callable[[Any, int, int], Any]
    count_parameters: Callable[[Any, int, int], int]
    presets: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    search_space: Mapping[str, tuple] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], None] = lambda config: None
    serving_logits: Callable[[Any], Callable] | None = None
    xla_scope: str = "auto"
    packs_words: bool = False
    decay_exempt: tuple[str, ...] = ()
    initial_state: Callable[..., tuple] | None = None
    decode_step: Callable[..., tuple] | None = None

    @property
    def own_preset(self) -> str | None:
        """The preset `train --model NAME` starts from: the first of `presets` (`None` if it has none)."""
        return next(iter(self.presets), None)

    def registered_as(self, name: str, default: bool = False) -> "ModelType":
        """This model type under its registry name `name`: its networks are named after it (`keras_name(name)`),
        its presets set `model` to it (but the default model type's, which need not), and a preset named after the
        type it was declared as is named after `name`. So a module copied under a new name is a new model type."""
        build = self.build

        def build_named(config, vocab_size: int, block_size: int):
            model = build(config, vocab_size, block_size)
            model.name = keras_name(name)
            return model

        presets = {(name if preset == self.name else preset):
                   {key: value for key, value in settings.items() if key != "model"} | ({} if default else {"model": name})
                   for preset, settings in self.presets.items()}
        return dataclasses.replace(self, name=name, build=build_named, presets=presets)


def keras_name(model_type: str) -> str:
    """The name of the Keras model of `model_type`: `mlp` -> `mlp_language_model`."""
    return f"{model_type}_language_model"


def block_size_for(model_type: ModelType, block_size: int, max_word_length: int) -> int:
    """The context length of `model_type`'s network on data whose longest word has `max_word_length` characters:
    `block_size` for a window model, a word model's `T`."""
    from keras_makemore.models import names_of_kind

    if model_type.context == WINDOW:
        return block_size
    if max_word_length > MAX_WORD_LENGTH:
        raise UserError(f"model {model_type.name} sees whole words, and the longest word of the data has "
                        f"{max_word_length:,} characters, over the limit of {MAX_WORD_LENGTH:,}: remove the long "
                        f"lines, or use a window model ({', '.join(names_of_kind(WINDOW))})", argument="data")
    return max_word_length + 1


def check_model_size(model_type: ModelType, config, vocab_size: int, block_size: int) -> None:
    """A `UserError` when `config`'s network of `model_type` would have more than `MAX_PARAMETERS` parameters."""
    params = model_type.count_parameters(config, vocab_size, block_size)
    if params > MAX_PARAMETERS:
        fields = model_type.hyperparameters
        sizes = [f"{name} {getattr(config, name)}" for name in ("hidden_units", "embed_dim", "block_size", "layers")
                 if name in fields] if "hidden_units" in fields else [f"a vocabulary of {vocab_size:,} tokens"]
        raise UserError(
            f"{' with '.join(sizes[:2]) + ''.join(' and ' + s for s in sizes[2:])} "
            f"would make {params:,} parameters for model {config.model} ({params * 4 / 2**30:.1f} GiB of float32 "
            f"weights), over the limit of {MAX_PARAMETERS:,}: make them smaller",
            argument="hidden_units" if "hidden_units" in fields else "data")


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0
