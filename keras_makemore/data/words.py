"""What a word model trains on: one row of token ids per word, or several words packed end to end in a row."""

import numpy as np
import tensorflow as tf

from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.data.windows import make_dataset, random_minibatches
from keras_makemore.models.base import IGNORED


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
