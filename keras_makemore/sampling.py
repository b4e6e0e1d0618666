"""Sample new words from a trained model, one character at a time.

Each step turns the model's logits into probabilities (softmax of
`logits / temperature`, optionally only the `top_k` largest kept) and picks the
token whose cumulative probability first exceeds a uniform random number `u`.
Drawing through explicit uniforms makes samples portable: any runtime (Keras,
SavedModel, TFLite on a phone) given the same `u` picks the same tokens.
"""

from typing import Callable, Iterable, Sequence

import keras
import numpy as np

from keras_makemore.data import MARKER_ID, Vocabulary
from keras_makemore.errors import UserError

DEFAULT_MAX_LENGTH = 64


def next_token_probabilities(
    logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None
) -> np.ndarray:
    """Softmax of `logits / temperature` over the last axis, zero outside the `top_k` largest."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[..., -top_k][..., None]
        logits = np.where(logits < kth, -np.inf, logits)
    logits = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=-1, keepdims=True)


def pick_tokens(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: the first token whose cumulative probability exceeds `u`, per row."""
    cdf = np.cumsum(probs, axis=-1)
    picks = (cdf < uniforms[:, None] * cdf[:, -1:]).sum(axis=-1)
    return np.minimum(picks, probs.shape[-1] - 1)


def sample_words(
    model: Callable | keras.Model,
    vocab: Vocabulary,
    block_size: int,
    num_samples: int = 10,
    seed: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    prefix: str = "",
    max_length: int = DEFAULT_MAX_LENGTH,
    uniforms: np.ndarray | None = None,
) -> list[str]:
    """Sample `num_samples` words.

    Args:
        model: maps int32 contexts `[batch, block_size]` to logits `[batch, vocab]`.
        vocab: the model's vocabulary.
        block_size: the model's context length.
        num_samples: how many words.
        seed: seed of the random numbers; the same seed gives the same words.
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample only among the k most likely tokens.
        prefix: every word starts with these characters.
        max_length: the longest word, prefix included; longer ones are cut.
        uniforms: `[num_samples, max_length]` numbers in [0, 1) to draw with,
            instead of generating them from `seed`.

    Returns:
        The words, prefix included, without markers.

    Example:

    >>> from keras_makemore import build_model, Vocabulary
    >>> vocab = Vocabulary.from_words(["emma", "ava"])
    >>> words = sample_words(build_model(vocab.size), vocab, 3, num_samples=2, seed=0)
    >>> len(words)
    2
    """
    if not temperature > 0:
        raise UserError(f"temperature must be above 0, got {temperature}: try --temperature 1.0")
    if top_k is not None and top_k < 1:
        raise UserError(f"top-k must be at least 1, got {top_k}")
    if num_samples < 0:
        raise UserError(f"the number of samples must be 0 or more, got {num_samples}")
    prefix_ids = vocab.encode(prefix)
    if len(prefix_ids) >= max_length:
        raise UserError(f"the prefix is {len(prefix_ids)} characters, not shorter than max length {max_length}")
    if uniforms is None:
        uniforms = np.random.default_rng(seed).random((num_samples, max_length))
    context = np.zeros((num_samples, block_size), dtype=np.int32)
    for i in prefix_ids:
        context = np.concatenate([context[:, 1:], np.full((num_samples, 1), i, np.int32)], axis=1)
    generated = np.zeros((num_samples, max_length - len(prefix_ids)), dtype=np.int32)
    alive = np.ones(num_samples, dtype=bool)
    for t in range(generated.shape[1]):
        if not alive.any():
            break
        logits = np.asarray(model(context, training=False) if isinstance(model, keras.Model) else model(context))
        picks = pick_tokens(next_token_probabilities(logits, temperature, top_k), uniforms[:, len(prefix_ids) + t])
        picks = np.where(alive, picks, MARKER_ID)
        generated[:, t] = picks
        alive &= picks != MARKER_ID
        context = np.concatenate([context[:, 1:], picks[:, None].astype(np.int32)], axis=1)
    return [prefix + vocab.decode(row) for row in generated]


def novelty(samples: Iterable[str], training_words: Iterable[str]) -> float:
    """The share of `samples` that are not among `training_words`."""
    samples = list(samples)
    if not samples:
        return 0.0
    known = set(training_words)
    return sum(s not in known for s in samples) / len(samples)
