"""Corpora bigger than memory: the word list streams from disk in chunks, split by a stable hash of each line.

`open_corpus` reads a word list whole (`data.Corpus`) unless the file is
larger than `stream_threshold_bytes()`, a 32nd of the machine's memory; then
it returns a `StreamedCorpus`, which holds one chunk of the file at a time.
Both offer what training and evaluation use: `vocab`, `windows(split)`,
`split_size`, `known`, `max_word_length`.

A streamed corpus differs from an in-memory one in two documented ways:

- The split is `data.hash_split` of each line, about 80/10/10, the same split
  an in-memory corpus of over `data.LECTURE_SPLIT_MAX_WORDS` words uses (and
  stable across runs, machines and chunk sizes); never the lecture's shuffle.
- Training minibatches are drawn uniformly within one chunk at a time
  (`STREAM_CHUNK_BYTES` of the file, about 8 million lines of names), each
  chunk giving steps in proportion to its examples, and the chunks visited in
  a new random order on every pass over the file. The draws depend on the
  seed and the step alone, so a resumed run trains on the same minibatches.
"""

import functools
import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf

from keras_makemore.data.corpus import Corpus, find_known_words
from keras_makemore.data.reading import (
    MAX_LINE_CHARS,
    check_data_file,
    check_line_lengths,
    code_points,
    decode_data,
    no_words_error,
    pack_lines,
)
from keras_makemore.data.split import MIN_WORDS, SPLIT_NAMES, Split, check_split, hash_split
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.data.windows import Windows, flat_ids
from keras_makemore.errors import UserError

STREAM_CHUNK_BYTES = 64 << 20


def stream_threshold_bytes() -> int:
    """Files larger than this stream from disk: a 32nd of physical memory.

    Read whole and trained on, a corpus peaks at about 16 bytes per character
    of text on top of TensorFlow's own 0.9 GB (measured: 5.68 GB for a 292 MB,
    32M-line list; 1.31 GB for 29 MB), so a file a 32nd of memory takes about
    half of it, leaving room for the model, the optimizer and other work.
    """
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 32


def open_corpus(path: str | os.PathLike, block_size: int, seed: int = 42, vocab: Vocabulary | None = None,
                stream: bool | None = None) -> "Corpus | StreamedCorpus":
    """The corpus of a word-list file: read whole, or streamed from disk if it is large.

    Args:
        path: UTF-8 text, one word a line.
        block_size: characters of context.
        seed: seed of the split.
        vocab: reuse a saved vocabulary.
        stream: `True` streams, `False` reads whole, `None` streams when the
            file is larger than `stream_threshold_bytes()`.

    Example:

    >>> from keras_makemore.data.reading import load_names
    >>> type(open_corpus(load_names(), 3)).__name__
    'Corpus'
    """
    path = check_data_file(path)
    if stream is None:
        stream = path.stat().st_size > stream_threshold_bytes()
    if stream:
        return StreamedCorpus(path, block_size, seed, vocab)
    return Corpus.from_file(path, block_size, seed, vocab)


class StreamedCorpus:
    """A word list read from disk a chunk at a time, split by a hash of each line.

    Construction reads the file once, chunk by chunk, for the vocabulary and
    the number of words and examples of each split in each chunk; memory holds
    one chunk's words (a few bytes per character) at any time.

    Args:
        path: UTF-8 text, one word a line.
        block_size: characters of context.
        seed: seed of the hash split.
        vocab: reuse a saved vocabulary instead of collecting one.
        chunk_bytes: bytes of the file read at once (cut at a line end); `None`: `STREAM_CHUNK_BYTES`.

    Example:

    >>> from keras_makemore.data.reading import load_names
    >>> corpus = StreamedCorpus(load_names(), 3, chunk_bytes=100_000)
    >>> corpus.vocab.size, corpus.num_words, len(corpus.chunks)
    (27, 32033, 4)
    """

    split_rule = "hash"

    def __init__(self, path: str | os.PathLike, block_size: int, seed: int = 42, vocab: Vocabulary | None = None,
                 chunk_bytes: int | None = None):
        chunk_bytes = STREAM_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        if block_size < 1:
            raise UserError(f"block_size must be at least 1, got {block_size}", argument="block_size")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, got {chunk_bytes}")
        self.path, self.block_size, self.seed = check_data_file(path), block_size, seed
        self.failure: UserError | None = None  # the error of a read inside a tf.data pipeline, which TF rewraps
        self._size = self.path.stat().st_size
        chunks, words, examples, chars, longest, self._crcs = [], [], [], set(), 0, []
        for span, packed, crc in _read_chunks(self.path, chunk_bytes):
            buckets = hash_split(*packed, seed)
            spans = np.diff(packed[1])  # a word's characters and its newline: its examples
            chunks.append(span)
            self._crcs.append(crc)
            words.append(np.bincount(buckets, minlength=3))
            examples.append(np.bincount(buckets, weights=spans, minlength=3).astype(np.int64))
            longest = max(longest, int(spans.max()) - 1)
            if vocab is None:
                chars.update(Vocabulary.from_code_points(packed[0]).chars)
        if not chunks:
            raise no_words_error(self.path)
        self.chunks = chunks
        self._check_size()
        self._words, self._examples = np.array(words), np.array(examples)  # [chunk, split]
        self.max_word_length = longest
        self.vocab = vocab or Vocabulary(chars)
        if self.num_words < MIN_WORDS or not self._words.sum(axis=0).all():
            raise UserError(f"the data has {self.num_words} word(s), too few for a train/val/test split by hash: "
                            "give more words, one a line, or read the file whole", argument="data")
        self._windows = {}

    @property
    def num_words(self) -> int:
        return int(self._words.sum())

    def split_size(self, split: str) -> int:
        """The number of words in `split`."""
        return int(self._words[:, SPLIT_NAMES.index(check_split(split))].sum())

    def windows(self, split: str) -> "WindowStream":
        """The examples of `split`, as a `WindowStream` over the file's chunks."""
        if check_split(split) not in self._windows:
            self._windows[split] = WindowStream(self, split)
        return self._windows[split]

    def chunk_windows(self, chunk: int, split: str) -> Windows | None:
        """The `Windows` of `split` within chunk `chunk` (read from disk now), or `None` if it has none."""
        part = SPLIT_NAMES.index(check_split(split))
        if not self._examples[chunk, part]:
            return None
        chars, offsets = self._read(chunk)
        words = np.flatnonzero(hash_split(chars, offsets, self.seed) == part)
        try:
            ids = flat_ids(chars, offsets, words, self.vocab, self.block_size)
        except UserError as e:
            _fail(self, e)
            raise
        return Windows(ids, self.block_size)

    @functools.cached_property
    def split(self) -> Split:
        """The words of each split, as Python strings: the whole file in memory (one pass over it)."""
        parts = ([], [], [])
        for chunk in range(len(self.chunks)):
            chars, offsets = self._read(chunk)
            words = chars.tobytes().decode("ascii" if chars.dtype == np.uint8 else "utf-32-le").split("\n")
            for word, part in zip(words, hash_split(chars, offsets, self.seed).tolist()):
                parts[part].append(word)
        return Split(*parts)

    def known(self, words: Iterable[str], split: str = "train") -> list[str]:
        """Those of `words` that are words of `split` (one pass over the file)."""
        part, words, found = SPLIT_NAMES.index(check_split(split)), list(words), set()
        for chunk in range(len(self.chunks)):
            chars, offsets = self._read(chunk)
            found.update(find_known_words(chars, offsets, hash_split(chars, offsets, self.seed) == part, words))
        return [w for w in words if w in found]


    def _read(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk `chunk` of the file, checked to be what it was when the corpus was opened.

        A file changed since (shuffled, truncated, edited, upper-cased) would
        give other words than the split's, or characters outside the
        vocabulary: a `UserError` names the change, also kept in `failure`.
        """
        start, end = self.chunks[chunk]
        try:
            self._check_size()
            with open(self.path, "rb") as f:
                f.seek(start)
                raw = f.read(end - start)
            if zlib.crc32(raw) != self._crcs[chunk]:
                raise self._changed(f"bytes {start:,} to {end:,} are not what they were")
            return _pack(raw, self.path, start)
        except UserError as e:
            _fail(self, e)
            raise
        except OSError as e:
            raise _fail(self, self._changed(f"it cannot be read: {e.strerror}")) from None

    def _check_size(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            size = None
        if size != self._size:
            now = "it is gone" if size is None else f"{size:,} bytes"
            raise self._changed(f"it held {self._size:,} bytes, now {now}")

    def _changed(self, change: str) -> UserError:
        error = UserError(f"data file {self.path} changed while it was read ({change}): put the original file back, "
                          "then run the command again", argument="data")
        error.problem = f"data file {self.path} changed while it was read ({change})"  # for `train` to reword
        return error


_last_failure: UserError | None = None


def _fail(corpus: StreamedCorpus, error: UserError) -> UserError:
    global _last_failure
    corpus.failure = _last_failure = error
    return error


def failure_behind(error: BaseException) -> UserError | None:
    """The `UserError` of a streamed corpus' read that a TensorFlow error (tf.data's wrapping of a Python
    generator's exception) stands for, or `None`."""
    if _last_failure is not None and isinstance(error, tf.errors.OpError) and str(_last_failure) in str(error):
        return _last_failure
    return None


class WindowStream:
    """The examples of one split of a `StreamedCorpus`, chunk by chunk.

    It offers what training and evaluation ask of `data.Windows`: `len`,
    `block_size`, `batches` and `random_minibatches`; `chunks()` yields each
    chunk's `Windows`.
    """

    def __init__(self, corpus: StreamedCorpus, split: str):
        self.corpus, self.split = corpus, split
        self.block_size = corpus.block_size
        self.chunk_examples = corpus._examples[:, SPLIT_NAMES.index(split)]

    def __len__(self) -> int:
        return int(self.chunk_examples.sum())

    def __repr__(self) -> str:
        return f"WindowStream({len(self):,} examples in {len(self.chunk_examples)} chunks)"

    def chunks(self) -> Iterator[Windows]:
        """Each chunk's `Windows` of the split, in file order, read as they are asked for."""
        for chunk in np.flatnonzero(self.chunk_examples):
            yield self.corpus.chunk_windows(chunk, self.split)

    def batches(self, batch_size: int, max_examples: int | None = None) -> tf.data.Dataset:
        """`(contexts, next_ids)` minibatches of the examples in file order; see `Windows.batches`.

        With `max_examples`, each chunk gives its share of them, spread over it
        (the whole file is still read).
        """
        sizes = self.chunk_examples[self.chunk_examples > 0]
        if max_examples is not None:
            sizes = np.minimum(sizes, np.maximum(1, np.round(sizes * (max_examples / len(self))).astype(np.int64)))

        def generate():
            for windows, size in zip(self.chunks(), sizes):
                yield from windows.batches(batch_size, int(size)).as_numpy_iterator()

        return (tf.data.Dataset.from_generator(generate, output_signature=_signature(None, self.block_size))
                .apply(tf.data.experimental.assert_cardinality(int((-(-sizes // batch_size)).sum()))))

    def random_minibatches(self, batch_size: int, seed: int, steps: int, first_step: int = 0) -> tf.data.Dataset:
        """Minibatches of `batch_size` examples drawn with replacement, a chunk at a time, for steps
        `first_step` to `steps - 1`.

        A pass over the file is `len // batch_size` steps; chunk `c` gives the
        steps between `E[c-1] // batch_size` and `E[c] // batch_size`, E the
        running count of examples. Each pass visits the chunks in an order drawn
        from `(seed, pass)`, and the indices of a chunk's steps are drawn from
        `(seed, pass, chunk)`: a step's minibatch depends on the seed and the
        step alone, whichever step a run starts from.
        """
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}", argument="batch_size")
        if not 0 <= first_step <= steps:
            raise UserError(f"first_step must be in [0, steps={steps}], got {first_step}", argument="first_step")
        chunks = np.flatnonzero(self.chunk_examples)
        ends = np.cumsum(self.chunk_examples[chunks]) // batch_size
        ends[-1] = max(1, ends[-1])  # a pass of at least one step
        per_pass = int(ends[-1])

        def generate():
            step = first_step
            while step < steps:
                epoch, within = divmod(step, per_pass)
                order = np.random.default_rng([seed, epoch]).permutation(len(chunks))
                counts = np.diff(ends, prepend=0)[order]
                slot = int(np.searchsorted(np.cumsum(counts), within, side="right"))
                start = int(np.cumsum(counts)[slot] - counts[slot])
                chunk = chunks[order[slot]]
                windows = self.corpus.chunk_windows(chunk, self.split)
                draws = np.random.default_rng([seed, epoch, chunk]).integers(
                    0, len(windows), (int(counts[slot]), batch_size), dtype=np.int32)
                rows = draws[within - start:within - start + steps - step]
                x, y = windows.gather(tf.constant(rows))
                yield x.numpy(), y.numpy()
                step += len(rows)

        return (tf.data.Dataset.from_generator(generate, output_signature=_signature(batch_size, self.block_size,
                                                                                    blocks=True))
                .unbatch().apply(tf.data.experimental.assert_cardinality(steps - first_step))
                .prefetch(tf.data.AUTOTUNE))


def _signature(batch_size, block_size, blocks=False):
    lead = [None] if blocks else []
    return (tf.TensorSpec(lead + [batch_size, block_size], tf.int32), tf.TensorSpec(lead + [batch_size], tf.int32))


def _read_chunks(path: Path, chunk_bytes: int) -> Iterator[tuple[tuple[int, int], tuple[np.ndarray, np.ndarray], int]]:
    """`((start, end), (chars, offsets), crc32 of its bytes)` of each chunk of about `chunk_bytes` that holds words,
    cut after a newline."""
    start, rest = 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            data = rest + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if cut:
                packed = _pack(data[:cut], path, start)
                if len(packed[1]) > 1:
                    yield (start, start + cut), packed, zlib.crc32(data[:cut])
                start, rest = start + cut, data[cut:]
            else:
                rest = data
                if len(rest) > 4 * MAX_LINE_CHARS:  # one line, still without its end: over the limit already
                    check_line_lengths(rest, path, start)
            if not block:
                return


def _pack(raw: bytes, path: Path, at: int) -> tuple[np.ndarray, np.ndarray]:
    return pack_lines(code_points(raw, decode_data(raw, path, at)))
