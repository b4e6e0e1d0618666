"""`Corpus`: a word list prepared for one model, its vocabulary, split and examples per split, in memory."""

import copy
import functools
import os
from typing import Iterable, Sequence

import numpy as np

from keras_makemore.data.reading import code_points, no_words_error, pack_lines, pack_words, read_data_file
from keras_makemore.data.split import SPLIT_NAMES, Split, check_split, hash_split, lecture_split
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.data.windows import Windows, flat_ids
from keras_makemore.errors import UserError

# The most words `Corpus` splits as the lecture does; above, by a hash of each word. The lecture's shuffle is
# sequential Python (0.46 s a million words measured), the rest of reading a corpus numpy.
LECTURE_SPLIT_MAX_WORDS = 1_000_000


class Corpus:
    """A word list prepared for one model: vocabulary, split and examples per split.

    The words are kept packed (one array of code points), the split as word
    indices and each split's examples as `Windows`, all built with numpy: a
    corpus takes a few bytes per character, however long the context.

    Up to `LECTURE_SPLIT_MAX_WORDS` words, the split is the lecture's
    (`split_words`: a `random.shuffle` with `seed`, cut 80/10/10). Above it,
    where that shuffle alone would take longer than everything else, each word
    goes to a split by a stable hash of its text (`hash_split`), the split a
    streamed corpus uses too; the words then keep their file order.

    Args:
        words: the words, one item each.
        block_size: characters of context.
        seed: seed of the train/val/test split (42 gives the lecture's split).
        vocab: reuse a saved vocabulary instead of building one from `words`.

    Attributes:
        chars, offsets: all words packed (`pack_words`): word `k` is
            `chars[offsets[k]:offsets[k + 1] - 1]`, for code that wants the
            words as arrays (a sequence model's per-word ids are
            `vocab.ids_of` of them).
        split_rule: `"lecture"` or `"hash"`, the split this corpus used.

    Example:

    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> x, y = corpus.examples("train")
    >>> x.shape[1]
    3
    >>> len(corpus.windows("train")) == len(x)
    True
    """

    def __init__(
        self,
        words: Sequence[str],
        block_size: int,
        seed: int = 42,
        vocab: Vocabulary | None = None,
    ):
        self._setup(*pack_words(words), block_size, seed, vocab)

    @classmethod
    def from_file(cls, path: str | os.PathLike, block_size: int, seed: int = 42,
                  vocab: Vocabulary | None = None) -> "Corpus":
        """The corpus of a word-list file, read as `read_words` reads it, in numpy (millions of words a second).

        Example:

        >>> from keras_makemore.data.reading import load_names
        >>> Corpus.from_file(load_names(), 3).vocab.size
        27
        """
        raw, text = read_data_file(path)
        chars, offsets = pack_lines(code_points(raw, text))
        if len(offsets) == 1:
            raise no_words_error(path)
        corpus = cls.__new__(cls)
        corpus._setup(chars, offsets, block_size, seed, vocab)
        return corpus

    def _setup(self, chars, offsets, block_size, seed, vocab) -> None:
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        self.block_size = block_size
        self.chars, self.offsets = chars, offsets
        self.vocab = vocab or Vocabulary.from_code_points(chars)
        n = len(offsets) - 1
        if n <= LECTURE_SPLIT_MAX_WORDS:
            self.split_rule = "lecture"
            parts = lecture_split(n, seed)
        else:
            self.split_rule = "hash"
            buckets = hash_split(chars, offsets, seed)
            parts = tuple(np.flatnonzero(buckets == b) for b in range(3))
        self._word_indices = dict(zip(SPLIT_NAMES, parts))
        self._windows: dict[str, Windows] = {}
        self._examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def with_block_size(self, block_size: int) -> "Corpus":
        """The same words, vocabulary and split with another context length: nothing is read or split again.

        Example:

        >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
        >>> longer = corpus.with_block_size(corpus.max_word_length + 1)
        >>> longer.block_size, longer.split == corpus.split
        (9, True)
        """
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        other = copy.copy(self)
        other.block_size, other._windows, other._examples = block_size, {}, {}
        return other

    @property
    def num_words(self) -> int:
        return len(self.offsets) - 1

    @property
    def max_word_length(self) -> int:
        return int(np.diff(self.offsets).max()) - 1

    @functools.cached_property
    def words(self) -> list[str]:
        """All words, in the order given (built on first use: a Python string each)."""
        return self._words()

    @functools.cached_property
    def split(self) -> Split:
        """The words of each split (built on first use: a Python string each)."""
        return Split(*(self._words(self._word_indices[name]) for name in SPLIT_NAMES))

    def _words(self, indices: np.ndarray | None = None) -> list[str]:
        text = self.chars.tobytes().decode("ascii" if self.chars.dtype == np.uint8 else "utf-32-le")
        words = text.split("\n")[:-1]
        return words if indices is None else [words[i] for i in indices.tolist()]

    def known(self, words: Iterable[str], split: str = "train") -> list[str]:
        """Those of `words` that are words of `split`, found by searching the packed text: no word list is built.

        Example:

        >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
        >>> len(corpus.known(corpus.split.train + ["zed"]))
        5
        """
        in_split = np.zeros(self.num_words, dtype=bool)
        in_split[self._word_indices[check_split(split)]] = True
        return find_known_words(self.chars, self.offsets, in_split, words)

    def split_size(self, split: str) -> int:
        """The number of words in `split`."""
        return len(self._word_indices[check_split(split)])

    def windows(self, split: str) -> Windows:
        """The examples of `split` as `Windows` into its flat ids, built once per corpus."""
        if check_split(split) not in self._windows:
            self._windows[split] = Windows(
                flat_ids(self.chars, self.offsets, self._word_indices[split], self.vocab, self.block_size),
                self.block_size)
        return self._windows[split]

    def examples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`(x, y)` arrays of one split: `'train'`, `'val'` or `'test'`, built once per corpus.

        These are `block_size + 1` int32 per character; training and evaluation
        cut the same examples from `windows(split)` instead.
        """
        if split not in self._examples:
            self._examples[split] = self.windows(split).numpy()
        return self._examples[split]


def find_known_words(chars: np.ndarray, offsets: np.ndarray, selected: np.ndarray, words: Iterable[str]) -> list[str]:
    """Those of `words` that are among the packed words where `selected` is True, by a search of the text."""
    encoding = "ascii" if chars.dtype == np.uint8 else "utf-32-le"
    text = "\n".encode(encoding) + chars.tobytes()
    out = []
    for word in words:
        try:
            needle = f"\n{word}\n".encode(encoding)
        except UnicodeEncodeError:
            continue  # a character no word of an ASCII text has
        at = text.find(needle)
        while at >= 0 and not (at % chars.itemsize == 0 and selected[np.searchsorted(offsets, at // chars.itemsize)]):
            at = text.find(needle, at + 1)
        if at >= 0:
            out.append(word)
    return out
