"""The sampling controls, checked once and turned into the int32/float32 inputs of `generate`.

Keras, the SavedModel and LiteRT files all sample through the same graph
(`keras_makemore.generation`); this module gives them the same inputs, so the
same options give the same words on every runtime.
"""

import dataclasses
import math
import secrets

import numpy as np

from keras_makemore.data import Vocabulary
from keras_makemore.errors import UserError

INT32_MAX = 2**31 - 1
# Below it float32 logits / temperature overflow (1e-50 even rounds to 0 in float32, and every word came out
# empty); at 1e-6 logits up to 1e32 stay finite, and the sampling is greedy already.
MIN_TEMPERATURE = 1e-6


@dataclasses.dataclass(frozen=True)
class SamplingControls:
    """How each character is drawn.

    Args:
        temperature: > 0 and finite; below 1 sharpens the distribution, above 1 flattens it.
        top_k: draw only among the `top_k` likeliest tokens (None: all).
        top_p: nucleus sampling: draw only among the likeliest tokens whose
            probabilities add up to `top_p` (None: all); in (0, 1].
        prefix: every word starts with these characters.
        min_length: the end marker is not drawn before this many characters.
        max_length: words are cut at this many characters, prefix included
            (None: the longest the model allows).

    Example:

    >>> SamplingControls(temperature=0.8, top_p=0.9).top_p
    0.9
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    prefix: str = ""
    min_length: int = 0
    max_length: int | None = None

    def __post_init__(self):
        if not _is_number(self.temperature) or not (MIN_TEMPERATURE <= self.temperature < math.inf):
            raise UserError(f"temperature must be a finite number of at least {MIN_TEMPERATURE:g}, got "
                            f"{self.temperature}: try 1.0", argument="temperature")
        if self.top_k is not None and (not _is_int(self.top_k) or not 1 <= self.top_k <= INT32_MAX):
            raise UserError(f"top_k must be a whole number of at least 1, got {self.top_k}: try 5, or leave it out",
                            argument="top_k")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            raise UserError(f"top_p must be above 0 and at most 1, got {self.top_p}: try 0.9, or leave it out",
                            argument="top_p")
        if not isinstance(self.prefix, str):
            raise UserError(f"prefix must be a string, got {self.prefix!r}", argument="prefix")
        if not _is_int(self.min_length) or not 0 <= self.min_length <= INT32_MAX:
            raise UserError(f"min_length must be a whole number of 0 or more, got {self.min_length}",
                            argument="min_length")
        if self.max_length is not None and (not _is_int(self.max_length) or not 1 <= self.max_length <= INT32_MAX):
            raise UserError(f"max_length must be a whole number of at least 1, got {self.max_length}",
                            argument="max_length")
        if self.max_length is not None and self.min_length > self.max_length:
            raise UserError(f"min_length {self.min_length} is above max_length {self.max_length}: "
                            "lower min_length or raise max_length", argument="min_length")

    def inputs(self, vocab: Vocabulary, width: int) -> dict[str, np.ndarray]:
        """The controls as `generate`'s inputs, for words of at most `width` characters.

        Returns:
            `temperature`, `top_k` (0: off), `top_p` (1: off), `prefix` (token
            ids, zero-padded to `width`), `min_length` and `max_length`, as
            int32 and float32 numpy scalars and arrays.
        """
        max_length = width if self.max_length is None else self.max_length
        if max_length > width:
            raise UserError(f"max_length must be at most {width} for this model, got {max_length}",
                            argument="max_length")
        if self.min_length > max_length:
            raise UserError(f"min_length {self.min_length} is above this model's longest word ({max_length}): "
                            f"use {max_length} or less", argument="min_length")
        prefix_ids = vocab.encode(self.prefix)
        if len(prefix_ids) >= max_length:
            raise UserError(f"prefix has {len(prefix_ids)} characters, leaving none of max_length {max_length} "
                            "to sample: shorten it or raise max_length", argument="prefix")
        prefix = np.zeros(width, np.int32)
        prefix[:len(prefix_ids)] = prefix_ids
        return {"temperature": np.float32(self.temperature), "top_k": np.int32(self.top_k or 0),
                "top_p": np.float32(self.top_p or 1.0), "prefix": prefix,
                "min_length": np.int32(self.min_length), "max_length": np.int32(max_length)}


def resolve_seed(seed: int | None) -> int:
    """`seed` checked to fit int32 (negative seeds are fine), or a fresh random seed when None."""
    if seed is None:
        return secrets.randbelow(INT32_MAX + 1)
    if not _is_int(seed) or not -INT32_MAX - 1 <= seed <= INT32_MAX:
        raise UserError(f"seed must be a whole number from {-INT32_MAX - 1} to {INT32_MAX}, got {seed}",
                        argument="seed")
    return int(seed)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
