"""Words in, training examples out: reading, vocabulary, split, context windows.

A word `emma` with `block_size=3` becomes the examples

    ... -> e      ..e -> m      .em -> m      emm -> a      mma -> .

where `.` is the start/end marker: token id 0, a dedicated token that is never
a character of the data (it is only *shown* as `.`).
"""

import dataclasses
import importlib.resources
import json
import os
import random
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from keras_makemore import _atomic
from keras_makemore.errors import UserError

# Where the packaged copy comes from (MIT license); see data/README.md.
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_RESOURCE = "datasets/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"

MARKER_ID = 0
MARKER_DISPLAY = "."
SPLIT_NAMES = ("train", "val", "test")
MIN_WORDS = 6  # the fewest words for which 80/10/10 leaves every split non-empty
# Steps whose minibatches `random_minibatches` draws in one op: 2.6 us of CPU a step, against 24 us
# drawing each step's on its own (measured; a lecture-MLP step takes about 100 us).
_DRAW_BLOCK = 100


def load_names() -> Path:
    """Return the path of makemore's names.txt, which ships inside this package.

    32,033 US baby names, one a line, from karpathy/makemore (MIT license; see
    `data/README.md` in the repository). The file is package data, so it is
    there offline, with no download and no cache.

    Example:

    >>> len(read_words(load_names()))
    32033
    """
    path = Path(str(importlib.resources.files("keras_makemore") / NAMES_RESOURCE))
    if not path.is_file():
        raise UserError(f"the packaged names dataset is missing ({path}): reinstall keras-makemore")
    return path


def read_words(path: str | os.PathLike) -> list[str]:
    """Read a UTF-8 text file with one word a line; strip whitespace, drop empty lines."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}: pass an existing text file, one word a line", argument="data")
    if not path.is_file():
        raise UserError(f"data file {path} is not a regular file: pass a text file, one word a line", argument="data")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read data file {path}: {e.strerror}") from None
    if b"\x00" in raw:
        raise UserError(
            f"data file {path} looks binary (it contains NUL bytes): "
            "pass a UTF-8 text file with one word a line"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"data file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): "
            "convert it to UTF-8, e.g. with iconv"
        ) from None
    words = [line.strip() for line in text.split("\n")]
    words = [w for w in words if w]
    if not words:
        raise UserError(f"data file {path} has no words (it is empty or blank): put one word a line")
    return words


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
        _atomic.write_json(path, self.to_json())

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
    if len(words) < MIN_WORDS:
        raise UserError(
            f"the data has {len(words)} word(s), too few for a train/val/test split: "
            f"give at least {MIN_WORDS} words, one a line"
        )
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return Split(words[:n1], words[n1:n2], words[n2:])


def build_examples(
    words: Sequence[str], vocab: Vocabulary, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Context windows and next tokens: `x` int32 `[n, block_size]`, `y` int32 `[n]`.

    Every word yields `len(word) + 1` examples: one for each character and one
    for the end marker; contexts before the word's start are marker-padded.
    """
    if block_size < 1:
        raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    # Each word is laid out as block_size markers, its characters, one end marker.
    ids = np.fromiter(
        (vocab._ids.get(ch, -1) for w in words for ch in w),
        dtype=np.int32,
        count=int(lengths.sum()),
    )
    if (ids < 0).any():
        bad = next(ch for w in words for ch in w if ch not in vocab._ids)
        raise UserError(
            f"character {bad!r} of the data is not in the vocabulary: "
            "the model was trained on other data; use the run's own data file"
        )
    spans = lengths + block_size + 1
    starts = np.concatenate([[0], np.cumsum(spans)[:-1]])
    seq = np.zeros(int(spans.sum()), dtype=np.int32)
    char_pos = np.repeat(starts + block_size, lengths) + _ranges(lengths)
    seq[char_pos] = ids
    # Targets: every character and the end marker of each word.
    targets = np.repeat(starts + block_size, lengths + 1) + _ranges(lengths + 1)
    x = seq[targets[:, None] + np.arange(-block_size, 0)]
    return x.astype(np.int32), seq[targets]


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated `arange(n)` for each n in `lengths`."""
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A `tf.data` pipeline of `(contexts, next_ids)` minibatches for `model.fit`, one pass over the examples.

    Args:
        x, y: the examples, as `build_examples` returns them.
        batch_size: examples per minibatch.
        shuffle: reshuffle the examples on every pass.
        seed: seed of the shuffle.
        drop_remainder: drop the last, smaller minibatch of each pass, so that
            every minibatch has `batch_size` examples (as `engine.fit` needs).

    Example:

    >>> x, y = build_examples(["emma", "ava"], Vocabulary.from_words(["emma", "ava"]), 3)
    >>> ds = make_dataset(x, y, batch_size=4, seed=0)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(4, 3), (4,)]
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
    if not shuffle:
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder).prefetch(tf.data.AUTOTUNE)
    examples, targets = tf.constant(x), tf.constant(y)
    full = len(x) // batch_size * batch_size

    def one_pass(pass_seed):
        # A whole pass is shuffled and gathered in one op, then cut into minibatches: per-example
        # shuffling in tf.data costs more than the training step of a small model (measured 2.5x).
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=tf.stack([pass_seed, 0]))
        batches = tf.reshape(order[:full], [-1, batch_size])
        minibatches = tf.data.Dataset.from_tensor_slices((tf.gather(examples, batches), tf.gather(targets, batches)))
        if not drop_remainder and full < len(x):
            rest = order[full:]
            minibatches = minibatches.concatenate(
                tf.data.Dataset.from_tensors((tf.gather(examples, rest), tf.gather(targets, rest))))
        return minibatches

    # One new seed per pass over the dataset: every `iter()` reshuffles, as `Dataset.shuffle` does.
    pass_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    minibatches = full // batch_size + (0 if drop_remainder or full == len(x) else 1)
    return (pass_seeds.flat_map(one_pass).apply(tf.data.experimental.assert_cardinality(minibatches))
            .prefetch(tf.data.AUTOTUNE))


def random_minibatches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    steps: int,
    first_step: int = 0,
) -> tf.data.Dataset:
    """The lecture's minibatches, `ix = randint(0, n, (batch_size,))` at each step, as a `tf.data` pipeline.

    The indices of step `t` are row `t % 100` of a stateless draw seeded with
    `(seed, t // 100)`: a function of the seed and the step alone, so the
    minibatches of steps `first_step` to `steps - 1` are the same whether a
    run starts at step 0 or resumes at `first_step`.

    Args:
        x, y: the examples, as `build_examples` returns them.
        batch_size: examples per minibatch, drawn with replacement.
        seed: seed of the draws.
        steps: the step after the last minibatch.
        first_step: the step of the first minibatch.

    Example:

    >>> x, y = build_examples(["emma", "ava"], Vocabulary.from_words(["emma", "ava"]), 3)
    >>> resumed = random_minibatches(x, y, 4, seed=0, steps=10, first_step=6)
    >>> whole = random_minibatches(x, y, 4, seed=0, steps=10)
    >>> bool((next(iter(resumed))[0] == list(whole)[6][0]).numpy().all())
    True
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
    if not 0 <= first_step <= steps:
        raise UserError(f"first_step must be in [0, steps={steps}], got {first_step}", argument="first_step")
    examples, targets = tf.constant(x), tf.constant(y)

    def draw(block):
        indices = tf.random.stateless_uniform([_DRAW_BLOCK, batch_size], seed=tf.stack([tf.constant(seed, tf.int64), block]),
                                              maxval=len(x), dtype=tf.int32)
        return tf.gather(examples, indices), tf.gather(targets, indices)

    first_block = first_step // _DRAW_BLOCK
    return (tf.data.Dataset.range(first_block, -(-steps // _DRAW_BLOCK)).map(draw).unbatch()
            .skip(first_step - first_block * _DRAW_BLOCK).take(steps - first_step).prefetch(tf.data.AUTOTUNE))


class Corpus:
    """A word list prepared for one model: vocabulary, split and examples per split.

    Args:
        words: the words, one item each.
        block_size: characters of context.
        seed: seed of the train/val/test shuffle (42 gives the lecture's split).
        vocab: reuse a saved vocabulary instead of building one from `words`.

    Example:

    >>> corpus = Corpus(["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia"], 3)
    >>> x, y = corpus.examples("train")
    >>> x.shape[1]
    3
    """

    def __init__(
        self,
        words: Sequence[str],
        block_size: int,
        seed: int = 42,
        vocab: Vocabulary | None = None,
    ):
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        self.words = list(words)
        self.block_size = block_size
        self.vocab = vocab or Vocabulary.from_words(self.words)
        self.split = split_words(self.words, seed)
        self._examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def examples(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`(x, y)` arrays of one split: `'train'`, `'val'` or `'test'`, built once per corpus."""
        if split not in self._examples:
            self._examples[split] = build_examples(self.split[split], self.vocab, self.block_size)
        return self._examples[split]
