"""How likely a model finds given words: log-probability, mean NLL per character, perplexity.

Uses: rank candidate names by plausibility, flag unlikely entries in a list.
A Keras model scores through the same graph as the exported `score`
signature (`score_tokens`), so Keras, the SavedModel and the `.tflite` file
agree to float32 rounding.
"""

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.artifacts.reader import ExportedModel, score_in_chunks
from keras_makemore.data.reading import read_words
from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary, examples_per_call
from keras_makemore.errors import UserError
from keras_makemore.sampling.graph import keras_graph_function
from keras_makemore.sampling.words import check_model_inputs

_CHUNK_TOKENS = 131_072  # padded tokens per graph call, as 4,096 words of 32 characters: one long line pads no more
MAX_WORD_LENGTH = 4096  # the longest word a Keras model scores, as the longest an exported one may declare


@dataclasses.dataclass(frozen=True)
class WordScore:
    """One word's score.

    `log_prob` is the natural log-probability of the word's characters and its
    end marker; `nll` the mean negative log-likelihood per token, end marker
    included (`-log_prob / (len(word) + 1)`), in nats; `perplexity` is `exp(nll)`.
    Lower `nll` means more plausible.
    """

    word: str
    log_prob: float
    nll: float

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    def to_json(self) -> dict:
        return {"word": self.word, "nll": self.nll, "log_prob": self.log_prob, "perplexity": self.perplexity}


def score_words(model: keras.Model | ExportedModel, vocab: Vocabulary, words: list[str],
                block_size: int | None = None) -> list[WordScore]:
    """Score each of `words`, in the order given.

    Args:
        model: a Keras model mapping int32 contexts to logits, or an `ExportedModel`.
        vocab: the model's vocabulary; every character of `words` must be in it.
        words: the words to score.
        block_size: the Keras model's context length (default: read off its input).

    Returns:
        One `WordScore` per word; sort them by `nll` to rank the words.

    Example:

    >>> from keras_makemore import build_model, Vocabulary
    >>> vocab = Vocabulary.from_words(["emma", "ava"])
    >>> [s.word for s in score_words(build_model(vocab.size), vocab, ["ava", "emma"])]
    ['ava', 'emma']
    """
    check_model_inputs(model, vocab, block_size)
    words = list(words)
    for i, word in enumerate(words):
        vocab.encode(word)  # a clear error for a character the model never saw
        if len(word) > MAX_WORD_LENGTH and not isinstance(model, ExportedModel):  # it checks its own limit
            raise UserError(f"words: word {i + 1} has {len(word):,} characters, more than the {MAX_WORD_LENGTH:,} "
                            "a model scores", argument="words")
    if isinstance(model, ExportedModel):
        out = model.score(words)
    else:
        out = _keras_score(model, block_size or int(model.input_shape[1]), vocab, words)
    return [WordScore(w, float(lp), float(nll)) for w, lp, nll in zip(words, out["log_prob"], out["nll"])]


def read_word_file(path: str | os.PathLike, vocab: Vocabulary) -> list[str]:
    """The words of a text file, one a line; a character outside `vocab` is reported by line number only."""
    words = read_words(path)
    unknown = next((w for w in words if not set(w) <= set(vocab.chars)), None)
    if unknown is not None:
        lines = Path(path).read_text(encoding="utf-8-sig").split("\n")
        number = next(i for i, line in enumerate(lines, 1) if line.strip() == unknown)
        raise UserError(f"file: {path} line {number} has a character the model never saw: "
                        "remove the line, or score with a model trained on such characters", argument="file")
    return words


def iter_word_file(path: str | os.PathLike, vocab: Vocabulary, batch: int = 10_000) -> Iterator[list[str]]:
    """The words of a text file, one a line, `batch` at a time, read line by line (for files too big to hold).

    A character outside `vocab`, a line over `MAX_WORD_LENGTH` characters or bytes that are not UTF-8 are
    reported by line number only; a line is never read past that length.
    """
    from keras_makemore.data.reading import check_data_file

    path, chars, words, number = check_data_file(path), set(vocab.chars), [], 0
    try:
        with open(path, encoding="utf-8-sig", newline="\n") as f:
            while line := f.readline(MAX_WORD_LENGTH + 2):
                number += 1
                if not line.endswith("\n") and len(line) > MAX_WORD_LENGTH:
                    raise UserError(f"file {path} line {number:,} has more than the {MAX_WORD_LENGTH:,} characters "
                                    "a model scores: remove the line", argument="file")
                word = line.strip()
                if not word:
                    continue
                if not set(word) <= chars:
                    raise UserError(f"file {path} line {number:,} has a character the model never saw: "
                                    "remove the line, or score with a model trained on such characters", argument="file")
                words.append(word)
                if len(words) == batch:
                    yield words
                    words = []
    except UnicodeDecodeError as e:
        raise UserError(f"file {path} is not UTF-8 text (near line {number + 1:,}, {e.reason}): convert it to "
                        "UTF-8, e.g. with iconv", argument="file") from None
    if words:
        yield words


def score_tokens(logits_fn, block_size: int, words: tf.Tensor) -> dict[str, tf.Tensor]:
    """`log_prob` and `nll`, float32 `[n]`, of int32 token ids `words` `[n, width]` (zero-padded), inside the graph."""
    n, width = tf.shape(words)[0], tf.shape(words)[1]
    targets = tf.concat([words, tf.zeros([n, 1], tf.int32)], axis=1)
    padded = tf.concat([tf.zeros([n, block_size], tf.int32), words], axis=1)
    windows = tf.range(width + 1)[:, None] + tf.range(block_size)[None, :]
    contexts = tf.reshape(tf.gather(padded, windows, axis=1), [-1, block_size])
    log_probs = tf.nn.log_softmax(logits_fn(contexts))
    vocab_size = log_probs.shape[-1]
    picked = tf.gather(tf.reshape(log_probs, [-1]), tf.range(tf.size(targets)) * vocab_size + tf.reshape(targets, [-1]))
    lengths = tf.reduce_min(tf.where(tf.equal(words, MARKER_ID), tf.range(width), width), axis=1)
    counted = tf.range(width + 1)[None, :] <= lengths[:, None]
    log_prob = tf.reduce_sum(tf.where(counted, tf.reshape(picked, [n, width + 1]), 0.0), axis=1)
    return {"log_prob": log_prob, "nll": -log_prob / tf.cast(lengths + 1, tf.float32)}


_SCORE_SIGNATURE = [tf.TensorSpec([None, None], tf.int32, "words")]


def _keras_score(model: keras.Model, block_size: int, vocab: Vocabulary, words: list[str]) -> dict[str, np.ndarray]:
    score = keras_graph_function(model, block_size, score_tokens, _SCORE_SIGNATURE)

    def score_chunk(start: int, stop: int) -> dict:
        chunk = [vocab.encode(w) for w in words[start:stop]]
        ids = np.zeros((len(chunk), max(map(len, chunk)) + 1), np.int32)
        for i, encoded in enumerate(chunk):
            ids[i, :len(encoded)] = encoded
        return score(ids)

    return score_in_chunks(score_chunk, _chunks_by_tokens(words, examples_per_call(_CHUNK_TOKENS, vocab.size)))


def _chunks_by_tokens(words: list[str], tokens: int = _CHUNK_TOKENS) -> Iterator[tuple[int, int]]:
    """`(start, stop)` of consecutive runs of `words` whose padded size (words x (longest + 1)) stays within
    `tokens` (`_CHUNK_TOKENS`, fewer for a large vocabulary: `examples_per_call`)."""
    start, longest = 0, 0
    for i, word in enumerate(words):
        longest = max(longest, len(word) + 1)
        if i > start and (i + 1 - start) * longest > tokens:
            yield start, i
            start, longest = i, len(word) + 1
    if start < len(words):
        yield start, len(words)
