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
    """The text of `raw`, bytes of `path` from offset `at`; `None` if it is pure ASCII. A `UserError` if not text."""
    if b"\x00" in raw:
        raise UserError(
            f"data file {path} looks binary (it contains NUL bytes): "
            "pass a UTF-8 text file with one word a line"
        )
    if raw.isascii():
        return None
    try:
        return raw.decode("utf-8-sig" if at == 0 else "utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"data file {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {at + e.start}): "
            "convert it to UTF-8, e.g. with iconv"
        ) from None


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
