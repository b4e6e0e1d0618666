"""The vocabulary: token ids of a dataset's characters, the start/end marker first.

The marker is token id 0, a dedicated token that is never a character of the
data (it is only *shown* as `.`).
"""

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_makemore import atomic
from keras_makemore.errors import UserError

MARKER_ID = 0
MARKER_DISPLAY = "."


# The most tokens a model's vocabulary holds (characters and the marker): all of CJK's unified ideographs fit.
# Each costs a row of the output layer (hidden_units parameters) and a logit per example in every pass: at
# 70,000 characters and hidden 200, a validation pass reads 14M multiply-adds an example.
MAX_VOCAB_SIZE = 2**17
# Logits one graph call holds, 64 MB of float32: evaluation, scoring and sampling take fewer examples a call
# when the vocabulary is large (`examples_per_call`): evaluation's batches are unchanged up to 1,024 tokens,
# scoring's up to 128.
MAX_LOGITS_PER_CALL = 2**24


def examples_per_call(wanted: int, vocab_size: int) -> int:
    """`wanted`, or fewer, so that their logits over `vocab_size` tokens stay within `MAX_LOGITS_PER_CALL`.

    Example:

    >>> examples_per_call(16_384, 27), examples_per_call(16_384, 70_001)
    (16384, 239)
    """
    return max(1, min(wanted, MAX_LOGITS_PER_CALL // max(1, vocab_size)))


class Vocabulary:
    """The characters of a dataset, as token ids: the marker is 0, characters follow sorted.

    Args:
        chars: the distinct characters, in any order; they are sorted.

    Example:

    >>> vocab = Vocabulary.from_words(["emma", "olivia"])
    >>> vocab.size
    8
    >>> vocab.encode("emma")
    [2, 5, 5, 1]
    >>> vocab.decode([2, 5, 5, 1, 0])
    'emma'
    """

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        for ch in chars:
            if len(ch) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {ch!r}")
        self.chars = chars
        self._ids = {ch: i + 1 for i, ch in enumerate(chars)}

    @classmethod
    def from_words(cls, words: Iterable[str]) -> "Vocabulary":
        return cls(set().union(*map(set, words)))

    @classmethod
    def from_code_points(cls, chars: np.ndarray) -> "Vocabulary":
        """The vocabulary of the characters of packed words (`pack_words`), their newlines left out."""
        present = np.zeros(256 if chars.dtype == np.uint8 else int(chars.max(initial=0)) + 1, dtype=bool)
        if chars.dtype == np.uint8:
            present[chars] = True
        else:
            for start in range(0, len(chars), _CHUNK_CHARS):  # indexing copies the indices as int64
                present[chars[start:start + _CHUNK_CHARS]] = True
        present[ord("\n")] = False
        return cls(map(chr, np.flatnonzero(present).tolist()))

    @property
    def size(self) -> int:
        """Number of tokens: the characters plus the marker."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __repr__(self) -> str:
        return f"Vocabulary(size={self.size})"

    def encode(self, word: str) -> list[int]:
        """Token ids of `word`'s characters (no markers added)."""
        try:
            return [self._ids[ch] for ch in word]
        except KeyError as e:
            raise UserError(
                f"character {e.args[0]!r} in {word!r} is not in the vocabulary: "
                "use only characters of the training data"
            ) from None

    def ids_of(self, chars: np.ndarray) -> np.ndarray:
        """Token ids of packed words (`pack_words`), each newline the marker (`uint8` for up to 256 tokens).

        Raises a `UserError` naming the first character outside the vocabulary.
        """
        codes = [ord(ch) for ch in self.chars]
        # Unknown characters map to the marker too, and are told from the newlines by counting.
        table = np.zeros(max(256, max(codes, default=0) + 2), dtype=np.uint8 if self.size <= 256 else np.int32)
        table[codes] = np.arange(1, self.size)
        if chars.dtype == np.uint8:
            ids = table[chars]
        else:
            ids = np.empty(len(chars), dtype=table.dtype)
            for start in range(0, len(chars), _CHUNK_CHARS):  # indexing copies the indices as int64
                part = chars[start:start + _CHUNK_CHARS]
                ids[start:start + _CHUNK_CHARS] = table[np.minimum(part, len(table) - 1)]
        if len(ids) - np.count_nonzero(ids) != np.count_nonzero(chars == ord("\n")):
            bad = chr(int(chars[np.flatnonzero((ids == MARKER_ID) & (chars != ord("\n")))[0]]))
            raise UserError(
                f"character {bad!r} of the data is not in the vocabulary: "
                "the model was trained on other data; use the run's own data file"
            )
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The word spelled by `ids`, up to the first marker."""
        out = []
        for i in ids:
            i = int(i)
            if i == MARKER_ID:
                break
            out.append(self.chars[i - 1])
        return "".join(out)

    def token(self, i: int) -> str:
        """How token `i` is printed: its character, or '.' for the marker."""
        return MARKER_DISPLAY if i == MARKER_ID else self.chars[i - 1]

    def to_json(self) -> dict:
        return {"marker_id": MARKER_ID, "marker_display": MARKER_DISPLAY, "chars": self.chars}

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        path = Path(path)
        try:
            chars = json.loads(path.read_text(encoding="utf-8"))["chars"]
            return cls(chars)
        except FileNotFoundError:
            raise UserError(f"vocabulary file not found: {path}") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UserError(
                f"vocabulary file {path} is corrupt: retrain the run, or restore the file"
            ) from None


_CHUNK_CHARS = 1 << 24
