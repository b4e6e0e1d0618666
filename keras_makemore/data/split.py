"""The train/val/test split: the lecture's 80/10/10 shuffle, or a stable hash of each word for big corpora."""

import dataclasses
import random
from typing import Sequence

import numpy as np

from keras_makemore.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
MIN_WORDS = 6  # the fewest words for which 80/10/10 leaves every split non-empty


@dataclasses.dataclass(frozen=True)
class Split:
    """Words divided into train, val and test."""

    train: list[str]
    val: list[str]
    test: list[str]

    def __getitem__(self, name: str) -> list[str]:
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)


def split_words(words: Sequence[str], seed: int = 42) -> Split:
    """Shuffle with `seed` and cut 80/10/10, exactly as the makemore lecture does.

    With seed 42 this is `random.seed(42); random.shuffle(words)` cut at
    `int(0.8 * n)` and `int(0.9 * n)`.
    """
    words = list(words)
    train, val, test = lecture_split(len(words), seed)
    return Split(*([words[i] for i in part] for part in (train, val, test)))


def lecture_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Word indices of train, val and test: the lecture's `random.shuffle` with `seed`, cut 80/10/10."""
    if n < MIN_WORDS:
        raise UserError(
            f"the data has {n} word(s), too few for a train/val/test split: "
            f"give at least {MIN_WORDS} words, one a line"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)  # shuffling indices draws exactly what shuffling the words does
    order = np.array(order, dtype=np.int64)
    n1, n2 = int(0.8 * n), int(0.9 * n)
    return order[:n1], order[n1:n2], order[n2:]


def hash_split(chars: np.ndarray, offsets: np.ndarray, seed: int = 42) -> np.ndarray:
    """The split of each word by a stable hash of its characters: 0 train, 1 val, 2 test, about 80/10/10.

    A word's split depends on its text and `seed` alone, not on its position,
    the file's length or the machine: the same line lands in the same split
    in every run, whether the corpus is read whole or streamed in chunks, and
    duplicate lines never straddle train and val.

    Args:
        chars, offsets: the words, as `pack_words` or `pack_lines` return them.
        seed: seed mixed into the hash.

    Example:

    >>> from keras_makemore.data.reading import pack_words
    >>> chars, offsets = pack_words(["emma", "ava", "emma"])
    >>> buckets = hash_split(chars, offsets)
    >>> bool(buckets[0] == buckets[2])
    True
    """
    lengths = np.diff(offsets)
    out = np.empty(len(lengths), dtype=np.int8)
    chunks = range(0, len(lengths), _CHUNK_WORDS)  # in chunks: the terms take 8 bytes a character
    powers = _hash_powers(max(int(offsets[min(c + _CHUNK_WORDS, len(lengths))] - offsets[c]) for c in chunks)
                          if len(lengths) else 0)
    for first in chunks:
        size = lengths[first:first + _CHUNK_WORDS]
        start = offsets[first:first + len(size)] - offsets[first]
        with np.errstate(over="ignore"):
            # Word k's sum of c_j * M**j over its characters, from one sum over the chunk at global powers:
            # dividing by M**start (multiplying by the inverse of M, odd, modulo 2**64) makes it positional.
            terms = chars[offsets[first]:offsets[first + len(size)]] * powers[:int(start[-1] + size[-1])]
            sums = np.zeros(len(size), dtype=np.uint64)
            nonempty = size > 0
            if len(terms):
                sums[nonempty] = np.add.reduceat(terms, start[nonempty])
            h = sums * _hash_powers(0, start) + size.astype(np.uint64)
            h ^= np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
            # splitmix64's finaliser: every bit of the sum reaches the bucket.
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
        bucket = h % np.uint64(1000)
        out[first:first + len(size)] = (bucket >= 800).astype(np.int8) + (bucket >= 900)
    return out


def _hash_powers(n: int, inverse_at: np.ndarray | None = None) -> np.ndarray:
    """`M**j` modulo 2**64 for j in `range(n)`, or `M**-j` for j in `inverse_at`, as products of two small tables."""
    base = _HASH_MULTIPLIER if inverse_at is None else pow(_HASH_MULTIPLIER, -1, 2**64)
    last = n - 1 if inverse_at is None else int(inverse_at.max(initial=0))
    low, high = _powers(base, 4096), _powers(pow(base, 4096, 2**64), last // 4096 + 1)
    with np.errstate(over="ignore"):
        if inverse_at is None:
            return np.multiply.outer(high, low).ravel()[:n]
        return high[inverse_at // 4096] * low[inverse_at % 4096]


def _powers(base: int, n: int) -> np.ndarray:
    """`base**j` modulo 2**64 for j in `range(n)`."""
    factors = np.full(n, base, dtype=np.uint64)
    factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)


_HASH_MULTIPLIER = 0x100000001B3  # FNV-64's prime
_CHUNK_WORDS = 1 << 20


def check_split(name: str) -> str:
    if name not in SPLIT_NAMES:
        raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
    return name
