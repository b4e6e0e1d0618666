"""Reading word lists: the packaged names, a file's words, and their characters packed into one array.

A word list is a UTF-8 text file, one word a line; blank lines and the white
space around a word are dropped. `load_names` gives the packaged copy of
makemore's names.txt (MIT license; see data/README.md).
"""

import functools
import importlib.resources
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from keras_makemore.errors import UserError

# Where the packaged copy comes from (MIT license); see data/README.md.
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_RESOURCE = "data/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"


# The longest line a data file may hold, in characters: a window model trains on lines of any length up to it
# (a few bytes of memory a character); a longer one (a 1-GB line took 7.45 GiB to encode) is refused from the
# file's bytes, before anything is decoded. Word models take much shorter words (`models.base.MAX_WORD_LENGTH`).
MAX_LINE_CHARS = 2**20
_SCAN_BYTES = 1 << 24  # bytes looked at once when scanning for long lines: a transient 16 MB mask


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
    raw, text = read_data_file(path)
    words = [line.strip() for line in (text if text is not None else raw.decode("ascii")).split("\n")]
    words = [w for w in words if w]
    if not words:
        raise no_words_error(path)
    return words


def read_data_file(path: str | os.PathLike) -> tuple[bytes, str | None]:
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


def no_words_error(path) -> UserError:
    return UserError(f"data file {path} has no words (it is empty or blank): put one word a line")


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
        keep[np.repeat(line_starts, cut_before) + concat_ranges(cut_before)] = False
        keep[np.repeat(ends, cut_after) + concat_ranges(cut_after)] = False
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


def concat_ranges(lengths: np.ndarray) -> np.ndarray:
    """Concatenated `arange(n)` for each n in `lengths`."""
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets
