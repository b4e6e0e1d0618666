"""Words in, training examples out: reading, vocabulary, split, context windows.

A word `emma` with `block_size=3` becomes the examples

    ... -> e      ..e -> m      .em -> m      emm -> a      mma -> .

where `.` is the start/end marker: token id 0, a dedicated token that is never
a character of the data (it is only *shown* as `.`).
"""

import dataclasses
import functools
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
# The most words `Corpus` splits as the lecture does; above, by a hash of each word. The lecture's shuffle is
# sequential Python (0.46 s a million words measured), the rest of reading a corpus numpy.
LECTURE_SPLIT_MAX_WORDS = 1_000_000
# The most tokens a model's vocabulary holds (characters and the marker): all of CJK's unified ideographs fit.
# Each costs a row of the output layer (hidden_units parameters) and a logit per example in every pass: at
# 70,000 characters and hidden 200, a validation pass reads 14M multiply-adds an example.
MAX_VOCAB_SIZE = 2**17
# Logits one graph call holds, 64 MB of float32: evaluation, scoring and sampling take fewer examples a call
# when the vocabulary is large (`examples_per_call`): evaluation's batches are unchanged up to 1,024 tokens,
# scoring's up to 128.
MAX_LOGITS_PER_CALL = 2**24


# The longest line a data file may hold, in characters: a window model trains on lines of any length up to it
# (a few bytes of memory a character); a longer one (a 1-GB line took 7.45 GiB to encode) is refused from the
# file's bytes, before anything is decoded. Word models take much shorter words (`models.base.MAX_WORD_LENGTH`).
MAX_LINE_CHARS = 2**20
_SCAN_BYTES = 1 << 24  # bytes looked at once when scanning for long lines: a transient 16 MB mask


def examples_per_call(wanted: int, vocab_size: int) -> int:
    """`wanted`, or fewer, so that their logits over `vocab_size` tokens stay within `MAX_LOGITS_PER_CALL`.

    Example:

    >>> examples_per_call(16_384, 27), examples_per_call(16_384, 70_001)
    (16384, 239)
    """
    return max(1, min(wanted, MAX_LOGITS_PER_CALL // max(1, vocab_size)))


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
    raw, text = _read_data(path)
    words = [line.strip() for line in (text if text is not None else raw.decode("ascii")).split("\n")]
    words = [w for w in words if w]
    if not words:
        raise _no_words(path)
    return words


def _read_data(path: str | os.PathLike) -> tuple[bytes, str | None]:
    """The bytes of a word-list file, checked, and its text decoded unless it is pure ASCII (then `None`)."""
    path = check_data_file(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read data file {path}: {e.strerror}") from None
    return raw, decode_data(raw, path)


def check_data_file(path: str | os.PathLike) -> Path:
    """`path` as a `Path`, or a `UserError` if it is not an existing regular file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}: pass an existing text file, one word a line", argument="data")
    if not path.is_file():
        raise UserError(f"data file {path} is not a regular file: pass a text file, one word a line", argument="data")
    return path


def decode_data(raw: bytes, path: str | os.PathLike, at: int = 0) -> str | None:
    """The text of `raw`, bytes of `path` from offset `at`; `None` if it is pure ASCII. A `UserError` if not text,
    or if a line is longer than `MAX_LINE_CHARS` (`check_line_lengths`)."""
    if b"\x00" in raw:
        raise UserError(
            f"data file {path} looks binary (it contains NUL bytes): "
            "pass a UTF-8 text file with one word a line"
        )
    check_line_lengths(raw, path, at)
    if raw.isascii():
        return None
    try:
        return raw.decode("utf-8-sig" if at == 0 else "utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"data file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {at + e.start}): "
            "convert it to UTF-8, e.g. with iconv"
        ) from None


def check_line_lengths(raw: bytes, path: str | os.PathLike, at: int = 0, limit: int = MAX_LINE_CHARS) -> None:
    r"""A `UserError` naming the first line of `raw` (bytes of `path` from offset `at`) over `limit` characters.

    Read off the bytes, 16 MB at a time, before anything is decoded: a line's characters are its bytes that are
    not UTF-8 continuation bytes.

    Example:

    >>> check_line_lengths(b"emma\nolivia\n", "names.txt", limit=6)
    >>> try:
    ...     check_line_lengths(b"emma\nolivia\n", "names.txt", limit=5)
    ... except UserError as e:
    ...     str(e).split(":")[0]
    'data file names.txt line 2 has 6 characters, over the limit of 5 a line'
    """
    if len(raw) <= limit:
        return
    codes = np.frombuffer(raw, dtype=np.uint8)
    last = -1  # the newline before the line being read
    for start in range(0, len(codes), _SCAN_BYTES):
        ends = np.flatnonzero(codes[start:start + _SCAN_BYTES] == ord("\n")) + start
        if start + _SCAN_BYTES >= len(codes):
            ends = np.append(ends, len(codes))
        for end in ends[np.diff(ends, prepend=last) - 1 > limit].tolist():  # lines of more bytes than the limit
            begin = int(ends[np.searchsorted(ends, end) - 1]) + 1 if end != ends[0] else last + 1
            chars = _count_chars(codes[begin:end])
            if chars > limit:
                line = _newlines_before(path, at) + raw.count(b"\n", 0, begin) + 1
                raise UserError(f"data file {path} line {line:,} has {chars:,} characters, over the limit of "
                                f"{limit:,} a line: split it into words, one a line", argument="data")
        if len(ends):
            last = int(ends[-1])


def first_long_line(path: str | os.PathLike, limit: int) -> tuple[int, int]:
    """`(line number, characters)` of the first line of the data file `path` whose word (the line stripped) is over
    `limit` characters; `(0, 0)` if none. Read a line at a time: call it once lines are known to be bounded.
    """
    with open(path, "rb") as f:  # lines end at b"\n" alone, as `read_words` reads them
        for number, line in enumerate(f, 1):
            word = line.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace").strip()
            if len(word) > limit:
                return number, len(word)
    return 0, 0


def _count_chars(codes: np.ndarray) -> int:
    """The characters of UTF-8 bytes: those that are not continuation bytes (`0b10xxxxxx`)."""
    return sum(int(np.count_nonzero(codes[i:i + _SCAN_BYTES] & 0xC0 != 0x80))
               for i in range(0, len(codes), _SCAN_BYTES))


def _newlines_before(path: str | os.PathLike, at: int) -> int:
    """The newlines in the first `at` bytes of the file `path`, read 1 MiB at a time."""
    count = 0
    if at:
        with open(path, "rb") as f:
            while f.tell() < at:
                count += f.read(min(1 << 20, at - f.tell())).count(b"\n")
    return count


def code_points(raw: bytes, text: str | None) -> np.ndarray:
    """The code points of a text `decode_data` checked: `uint8` for ASCII (`text` `None`), else `uint32`."""
    return np.frombuffer(raw, dtype=np.uint8) if text is None else _code_points(text)


def _no_words(path) -> UserError:
    return UserError(f"data file {path} has no words (it is empty or blank): put one word a line")


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
    words = list(words)
    train, val, test = _lecture_split(len(words), seed)
    return Split(*([words[i] for i in part] for part in (train, val, test)))


def _lecture_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
_CHUNK_CHARS = 1 << 24


def pack_words(words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words as one array of code points, each word followed by a newline, and where each word starts.

    Word `k` is `chars[offsets[k]:offsets[k + 1] - 1]`; `offsets` ends with
    `len(chars)`. `chars` is `uint8` when every word is ASCII, else `uint32`:
    the packed text is the word list's own file, stripped.

    Example:

    >>> chars, offsets = pack_words(["emma", "zoë"])
    >>> offsets.tolist(), chars.dtype.name
    ([0, 5, 9], 'uint32')
    """
    if any("\n" in w for w in words):
        raise ValueError("words must not contain a newline, the separator of packed words")
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    return _code_points("".join(w + "\n" for w in words)), np.concatenate([[0], np.cumsum(lengths + 1)])


def _code_points(text: str) -> np.ndarray:
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def pack_lines(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The words of a text, as `read_words` reads them, packed as `pack_words` packs them.

    Lines end at `\n`; each is stripped of whitespace (what `str.strip` strips)
    and blank ones are dropped, all in numpy over the code points.

    Args:
        codes: the text's code points, `uint8` (ASCII) or `uint32`.

    Example:

    >>> chars, offsets = pack_lines(np.frombuffer(b" emma\r\n\nava", dtype=np.uint8))
    >>> bytes(chars).decode(), offsets.tolist()
    ('emma\nava\n', [0, 5, 9])
    """
    if not len(codes):
        return codes, np.zeros(1, dtype=np.int64)
    if codes[-1] != ord("\n"):
        codes = np.append(codes, np.array(ord("\n"), dtype=codes.dtype))
    newlines = np.flatnonzero(codes == ord("\n"))
    line_starts = np.concatenate([[0], newlines[:-1] + 1]).astype(np.int64)
    starts, ends = line_starts.copy(), newlines.copy()
    # Strip each line from both ends at once; lines rarely hold more than a few spaces at an end, and a
    # pathological one (a long run of blanks) is finished alone.
    for _ in range(8):
        lead = starts < ends
        lead[lead] = _is_space(codes[starts[lead]])
        starts += lead
        trail = starts < ends
        trail[trail] = _is_space(codes[ends[trail] - 1])
        ends -= trail
        if not (lead.any() or trail.any()):
            break
    else:
        for i in np.flatnonzero(starts < ends):
            solid = np.flatnonzero(~_is_space(codes[starts[i]:ends[i]]))
            starts[i], ends[i] = (starts[i] + solid[0], starts[i] + solid[-1] + 1) if len(solid) else (ends[i],) * 2
    blank = starts == ends
    # What goes: each line's leading and trailing blanks, and the whole of a blank line (its newline too).
    cut_before, cut_after = starts - line_starts, newlines - ends + blank
    if cut_before.any() or cut_after.any():
        keep = np.ones(len(codes), dtype=bool)
        keep[np.repeat(line_starts, cut_before) + _ranges(cut_before)] = False
        keep[np.repeat(ends, cut_after) + _ranges(cut_after)] = False
        codes = codes[keep]
    lengths = (ends - starts)[~blank] + 1
    return codes, np.concatenate([[0], np.cumsum(lengths)])


def _is_space(codes: np.ndarray) -> np.ndarray:
    table = _whitespace_table()
    return table[np.minimum(codes.astype(np.int64), len(table) - 1)]


_LAST_SPACE = 0x3000  # ideographic space, the highest code point `str.isspace` accepts (tested)


@functools.cache
def _whitespace_table() -> np.ndarray:
    """`table[c]`: whether `chr(c).isspace()`, for every c up to the last whitespace; the last entry is False."""
    spaces = [c for c in range(_LAST_SPACE + 1) if chr(c).isspace()]
    table = np.zeros(max(spaces) + 2, dtype=bool)
    table[spaces] = True
    return table


def build_examples(
    words: Sequence[str], vocab: Vocabulary, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Context windows and next tokens: `x` int32 `[n, block_size]`, `y` int32 `[n]`.

    Every word yields `len(word) + 1` examples: one for each character and one
    for the end marker; contexts before the word's start are marker-padded.
    This is `Windows.from_words(words, vocab, block_size).numpy()`; training
    uses the `Windows` themselves, which take `block_size` times less memory.
    """
    return Windows.from_words(words, vocab, block_size).numpy()


def _ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated `arange(n)` for each n in `lengths`."""
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets


class Windows:
    """The examples of a list of words, as windows into one flat array of token ids.

    `ids` holds `block_size` markers, then each word's ids followed by one end
    marker. Example `i` predicts `ids[i + block_size]` from the window
    `ids[i:i + block_size]` with every id up to the window's last marker set
    to the marker: that is the word's own, marker-padded context. The windows
    are cut per minibatch (`gather`), so the examples take one id per
    character, however long the context, where `build_examples` stores
    `block_size + 1` int32 per character. Sequence models read the same array
    per word: word `k` is the ids between its markers.

    Args:
        ids: the flat ids, laid out as above (`uint8` for up to 256 tokens).
        block_size: characters of context.

    Example:

    >>> vocab = Vocabulary.from_words(["emma"])
    >>> windows = Windows.from_words(["emma"], vocab, 3)
    >>> windows.ids.tolist(), len(windows)
    ([0, 0, 0, 2, 3, 3, 1, 0], 5)
    >>> x, y = windows.numpy()
    >>> x[3].tolist(), int(y[3])
    ([2, 3, 3], 1)
    """

    def __init__(self, ids: np.ndarray, block_size: int):
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        if len(ids) <= block_size or (ids[:block_size] != MARKER_ID).any() or ids[-1] != MARKER_ID:
            raise ValueError(f"ids must be {block_size} markers, then words each ending in a marker; "
                             f"got {len(ids)} ids")
        if len(ids) - block_size >= 2**31:
            raise UserError(f"a split of {len(ids) - block_size:,} examples is over the 2**31 a pipeline indexes: "
                            "split the data file in parts", argument="data")
        self.ids = ids
        self.block_size = block_size
        self._tensor = None

    @classmethod
    def from_words(cls, words: Sequence[str], vocab: "Vocabulary", block_size: int) -> "Windows":
        chars, offsets = pack_words(words)
        return cls(flat_ids(chars, offsets, np.arange(len(words)), vocab, block_size), block_size)

    def __len__(self) -> int:
        return len(self.ids) - self.block_size

    def __repr__(self) -> str:
        return f"Windows({len(self):,} examples, block_size={self.block_size})"

    def gather(self, indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Contexts int32 `[..., block_size]` and next ids int32 `[...]` of the examples at `indices` (int32)."""
        if self._tensor is None:
            with tf.init_scope():  # made once, eagerly, even when first asked for inside a tf.data function
                self._tensor = tf.constant(self.ids)
        window = tf.gather(self._tensor, indices[..., None] + tf.range(self.block_size))
        # Keep an id only if no marker follows it in the window: the ids before a word's start are another word's.
        inside = tf.math.cumprod(tf.cast(window != MARKER_ID, tf.int32), axis=-1, reverse=True)
        target = tf.gather(self._tensor, indices + self.block_size)
        return tf.cast(window, tf.int32) * inside, tf.cast(target, tf.int32)

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """All examples as arrays, `x` int32 `[n, block_size]` and `y` int32 `[n]`, as `build_examples` returns them."""
        x, y = self.gather(tf.range(len(self), dtype=tf.int32))
        return x.numpy(), y.numpy()

    def batches(self, batch_size: int, max_examples: int | None = None) -> tf.data.Dataset:
        """`(contexts, next_ids)` minibatches of the examples in order, for evaluation.

        Args:
            batch_size: examples per minibatch (the last may be smaller).
            max_examples: if set, only this many examples, spread evenly over all
                (example `i * len // max_examples` for each i): a quick estimate.
        """
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
        if max_examples is not None and max_examples < 1:
            raise UserError(f"max_examples must be at least 1, got {max_examples}", argument="max_examples")
        total = len(self)
        count = total if max_examples is None else min(total, max_examples)

        def batch(start):
            indices = tf.range(start, tf.minimum(start + batch_size, count))
            if count < total:
                indices = indices * total // count
            return self.gather(tf.cast(indices, tf.int32))

        return tf.data.Dataset.range(0, count, batch_size).map(batch).prefetch(tf.data.AUTOTUNE)

    def random_minibatches(self, batch_size: int, seed: int, steps: int, first_step: int = 0) -> tf.data.Dataset:
        """The lecture's minibatches of these examples; see the module function `random_minibatches`."""
        return _random_minibatches(len(self), self.gather, batch_size, seed, steps, first_step)


def flat_ids(chars: np.ndarray, offsets: np.ndarray, words: np.ndarray, vocab: "Vocabulary",
             block_size: int) -> np.ndarray:
    """The `Windows.ids` of the packed words at indices `words`, in that order.

    Args:
        chars, offsets: all words, as `pack_words` or `pack_lines` return them;
            their newlines become the end markers.
        words: indices of the words to lay out.
        vocab: the token ids of the characters.
        block_size: markers before the first word.
    """
    spans = offsets[words + 1] - offsets[words]
    if len(words) == len(offsets) - 1 and np.all(words == np.arange(len(words))):
        source = chars
    elif np.all(words[1:] > words[:-1]):
        # In file order (the hash split): select the words with a mask, 1 byte a character.
        selected = np.zeros(len(offsets) - 1, dtype=bool)
        selected[words] = True
        source = chars[np.repeat(selected, np.diff(offsets))]
    else:
        source = chars[np.repeat(offsets[words], spans) + _ranges(spans)]
    ids = vocab.ids_of(source)
    return np.concatenate([np.zeros(block_size, dtype=ids.dtype), ids])



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
    run starts at step 0 or resumes at `first_step`. `Windows.random_minibatches`
    draws the very same minibatches, cut from the flat ids.

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
    examples, targets = tf.constant(x), tf.constant(y)
    return _random_minibatches(len(x), lambda i: (tf.gather(examples, i), tf.gather(targets, i)),
                               batch_size, seed, steps, first_step)


def _random_minibatches(n, gather, batch_size, seed, steps, first_step) -> tf.data.Dataset:
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
    if not 0 <= first_step <= steps:
        raise UserError(f"first_step must be in [0, steps={steps}], got {first_step}", argument="first_step")

    def draw(block):
        indices = tf.random.stateless_uniform([_DRAW_BLOCK, batch_size], seed=tf.stack([tf.constant(seed, tf.int64), block]),
                                              maxval=n, dtype=tf.int32)
        return gather(indices)

    first_block = first_step // _DRAW_BLOCK
    return (tf.data.Dataset.range(first_block, -(-steps // _DRAW_BLOCK)).map(draw).unbatch()
            .skip(first_step - first_block * _DRAW_BLOCK).take(steps - first_step).prefetch(tf.data.AUTOTUNE))


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

        >>> Corpus.from_file(load_names(), 3).vocab.size
        27
        """
        raw, text = _read_data(path)
        chars, offsets = pack_lines(code_points(raw, text))
        if len(offsets) == 1:
            raise _no_words(path)
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
            parts = _lecture_split(n, seed)
        else:
            self.split_rule = "hash"
            buckets = hash_split(chars, offsets, seed)
            parts = tuple(np.flatnonzero(buckets == b) for b in range(3))
        self._word_indices = dict(zip(SPLIT_NAMES, parts))
        self._windows: dict[str, Windows] = {}
        self._examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}

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
        in_split[self._word_indices[_check_split(split)]] = True
        return _find_known(self.chars, self.offsets, in_split, words)

    def split_size(self, split: str) -> int:
        """The number of words in `split`."""
        return len(self._word_indices[_check_split(split)])

    def windows(self, split: str) -> Windows:
        """The examples of `split` as `Windows` into its flat ids, built once per corpus."""
        if _check_split(split) not in self._windows:
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


def _find_known(chars: np.ndarray, offsets: np.ndarray, selected: np.ndarray, words: Iterable[str]) -> list[str]:
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


def _check_split(name: str) -> str:
    if name not in SPLIT_NAMES:
        raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
    return name
