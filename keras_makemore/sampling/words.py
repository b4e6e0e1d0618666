"""Sample new words from a trained model, or from an exported one.

A Keras model samples through the same TensorFlow graph as the exported
`generate` signature (`keras_makemore.sampling.graph`), an `ExportedModel` through
that signature itself, so the same seed and controls give the same words in
Keras, the SavedModel and the `.tflite` file. Words are drawn in chunks of rows
of the seed's stream, so any number of words can be streamed, and words to
avoid (the training words, a list of banned words) are skipped, with a bound
on the tries.
"""

import functools
import inspect
import json
import re
from typing import Callable, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.artifacts.reader import MAX_LENGTH, ExportedModel
from keras_makemore.data.vocabulary import Vocabulary, examples_per_call
from keras_makemore.errors import UserError
from keras_makemore.sampling.controls import INT32_MAX, SamplingControls, control_keywords, resolve_seed
from keras_makemore.sampling.graph import generate_tokens, keras_graph_function, model_decoders

DEFAULT_MAX_LENGTH = 64
CHUNK_WORDS = 10_000  # rows per graph call: 10,000 rows of 64 tokens are 2.5 MB
DRAWS_PER_WORD = 100  # the default bound on tries when words are excluded


@control_keywords
def iter_words(
    model: keras.Model | ExportedModel | Callable,
    vocab: Vocabulary,
    block_size: int,
    num_samples: int = 10,
    seed: int | None = None,
    *,
    exclude: Iterable[str] = (),
    max_draws: int | None = None,
    **controls,
) -> Iterator[str]:
    """Sample `num_samples` words, skipping those in `exclude`, as a stream: they come a chunk at a time.

    The arguments are checked before the first word is drawn. `sample_words`
    takes the same arguments and returns a list.

    Args:
        model: a Keras model mapping int32 contexts `[batch, block_size]` to
            logits, an `ExportedModel` (which samples inside its artifact), or
            any callable from numpy contexts to logits (sampled eagerly, slower).
        vocab: the model's vocabulary.
        block_size: the model's context length.
        num_samples: how many words.
        seed: seed of the random numbers; the same seed and options give the
            same words on every runtime (default: a random seed).
        exclude: words never to return, e.g. the training words for new words only.
        max_draws: words drawn at most (default `num_samples`, or 100 times
            it when `exclude` is given). When too few words pass, fewer than
            `num_samples` are returned.
        **controls: the fields of `SamplingControls`: `temperature`, `top_k`,
            `top_p`, `prefix`, `min_length` and `max_length` (the longest word,
            prefix included; None: an exported model's own limit, 64 for a
            Keras model).

    Returns:
        The words, prefix included, without markers.
    """
    check_model_inputs(model, vocab, block_size)
    controls = SamplingControls(**controls)
    seed = resolve_seed(seed)
    exclude = frozenset(exclude)
    _check_count(num_samples, "num_samples")
    max_draws = _default_draws(num_samples, exclude) if max_draws is None else max_draws
    _check_count(max_draws, "max_draws")
    if isinstance(model, ExportedModel):
        inputs = controls.inputs(vocab, model.max_length)
        rows = lambda first_row, n: model.generate_tokens(seed, first_row, n, inputs)  # noqa: E731
    else:
        if (controls.max_length or 0) > MAX_LENGTH:  # every row holds max_length tokens
            raise UserError(f"max_length must be at most {MAX_LENGTH:,}, got {controls.max_length:,}",
                            argument="max_length")
        inputs = controls.inputs(vocab, controls.max_length or DEFAULT_MAX_LENGTH)
        if isinstance(model, keras.Model):
            generate = keras_graph_function(model, block_size, _generate, _GENERATE_SIGNATURE)
        else:
            generate = functools.partial(_generate, _eager_logits(model), block_size)
        rows = lambda first_row, n: generate(np.int32(seed), np.int32(first_row), np.int32(n), *inputs.values())  # noqa: E731
    return _draw(rows, vocab, num_samples, exclude, max_draws)


def sample_words(*args, **kwargs) -> list[str]:
    """The words of `iter_words`, with its arguments, as a list.

    Example:

    >>> from keras_makemore import build_model, Vocabulary
    >>> vocab = Vocabulary.from_words(["emma", "ava"])
    >>> words = sample_words(build_model(vocab.size), vocab, 3, num_samples=2, seed=0, top_p=0.9)
    >>> len(words)
    2
    """
    return list(iter_words(*args, **kwargs))


sample_words.__signature__ = inspect.signature(iter_words).replace(return_annotation=list[str])


def check_model_inputs(model, vocab: Vocabulary, block_size: int | None) -> None:
    """A `UserError` unless `vocab` is a `Vocabulary` of the model's size and `block_size` its context length."""
    if not isinstance(vocab, Vocabulary):
        raise UserError(f"vocab must be a Vocabulary (e.g. Vocabulary.from_words(words)), got {type(vocab).__name__}",
                        argument="vocab")
    if isinstance(model, ExportedModel):
        sizes = {"vocab_size": model.vocab.size, "block_size": model.block_size}
    else:
        try:
            (inputs,), (outputs,) = model.inputs, model.outputs
            sizes = {"vocab_size": outputs.shape[-1], "block_size": inputs.shape[-1]}
        except (AttributeError, TypeError, ValueError):
            return  # a plain callable, or a subclassed model: its shapes are unknown until it is called
    if sizes["vocab_size"] is not None and sizes["vocab_size"] != vocab.size:
        raise UserError(f"vocab has {vocab.size} tokens but the model predicts {sizes['vocab_size']}: pass the "
                        "model's own vocabulary", argument="vocab")
    if block_size is not None and sizes["block_size"] is not None and sizes["block_size"] != block_size:
        raise UserError(f"block_size {block_size} is not the model's context length {sizes['block_size']}: "
                        f"pass {sizes['block_size']}", argument="block_size")


def _generate(logits_fn, block_size, seed, first_row, num_words, *controls):
    return generate_tokens(logits_fn, seed, first_row, num_words, block_size=block_size,
                           **model_decoders(logits_fn), **SamplingControls.by_name(controls))


def _eager_logits(model: Callable) -> Callable:
    """A plain callable on numpy contexts as the loop's `logits_fn`; the loop then runs eagerly, step by step."""
    return lambda context: tf.constant(np.asarray(model(context.numpy())), tf.float32)


_GENERATE_SIGNATURE = [tf.TensorSpec([], tf.int32, "seed"), tf.TensorSpec([], tf.int32, "first_row"),
                       tf.TensorSpec([], tf.int32, "num_words"), *SamplingControls.tensor_specs(None)]


def _check_count(value, argument: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= INT32_MAX:
        raise UserError(f"{argument} must be a whole number from 0 to {INT32_MAX:,}, got {value}",
                        argument=argument)


def _default_draws(num_samples: int, exclude: frozenset) -> int:
    return min(INT32_MAX, num_samples * DRAWS_PER_WORD if exclude else num_samples)


def _draw(rows: Callable, vocab: Vocabulary, num_samples: int, exclude: frozenset, max_draws: int) -> Iterator[str]:
    """The first `num_samples` words of the stream that are not in `exclude`, among its first `max_draws` rows."""
    found = drawn = 0
    while found < num_samples and drawn < max_draws:
        wanted = num_samples - found
        n = min(examples_per_call(CHUNK_WORDS, vocab.size), max_draws - drawn, 2 * wanted + 16 if exclude else wanted)
        for word in (vocab.decode(row) for row in np.asarray(rows(drawn, n))):
            if word not in exclude:
                yield word
                found += 1
                if found == num_samples:
                    return
        drawn += n


# Characters a terminal obeys instead of showing: the C0 and C1 controls and DEL (ESC starts its escape
# sequences, U+009B is CSI in 8-bit terminals), and the bidirectional overrides, which reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(word: str) -> str:
    r"""`word` with each character a terminal would obey written as a visible escape (`\x1b`, `\u202e`).

    Words come from training data, which may hold anything: printed as they are, an escape sequence in one
    would drive the terminal (recolour it, move the cursor, set its title).

    Example:

    >>> print(printable("\x1b[31mred\x07"))
    \x1b[31mred\x07
    >>> printable("zoë")
    'zoë'
    """
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", word)


def printable_json(obj) -> str:
    r"""`json.dumps(obj, ensure_ascii=False)` with every character `printable` escapes written as `\uXXXX`:
    still valid JSON, which decodes to the same words."""
    text = json.dumps(obj, ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)  # json.dumps escapes C0 already; C1 it does not


def novelty(samples: Iterable[str], training_words: Iterable[str]) -> float:
    """The share of `samples` that are not among `training_words`."""
    samples = list(samples)
    if not samples:
        return 0.0
    known = set(training_words)
    return sum(s not in known for s in samples) / len(samples)
