import hashlib
import json
import random

import numpy as np
import pytest

from keras_makemore import data
from keras_makemore.data import (MARKER_ID, Corpus, Vocabulary, build_examples, load_names, make_dataset,
                                 read_words, split_words)
from keras_makemore.errors import UserError


def test_split_is_the_lectures(names_path):
    words = names_path.read_text().splitlines()
    expected = list(words)
    random.seed(42)
    random.shuffle(expected)
    n1, n2 = int(0.8 * len(expected)), int(0.9 * len(expected))

    split = split_words(read_words(names_path), seed=42)

    assert split.train == expected[:n1]
    assert split.val == expected[n1:n2]
    assert split.test == expected[n2:]
    assert (len(split.train), len(split.val), len(split.test)) == (25626, 3203, 3204)


def test_lecture_example_counts(names_path):
    corpus = Corpus(read_words(names_path), block_size=3, seed=42)
    assert corpus.vocab.size == 27
    assert [len(corpus.examples(s)[0]) for s in ("train", "val", "test")] == [182625, 22655, 22866]


def test_split_depends_on_seed_only(words_path):
    words = read_words(words_path)
    assert split_words(words, 3) == split_words(words, 3)
    assert split_words(words, 3) != split_words(words, 4)


def test_read_words_strips_and_drops_blank_lines(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xef\xbb\xbfemma \r\n\n  ava\t\n\n\n")
    assert read_words(path) == ["emma", "ava"]


def test_unicode_and_dot_are_ordinary_characters(unicode_path):
    words = read_words(unicode_path)
    assert "zoë" in words and "o.neil" in words and "anne marie" in words and "日向" in words
    vocab = Vocabulary.from_words(words)
    assert MARKER_ID == 0
    assert "." in vocab.chars and " " in vocab.chars and "ë" in vocab.chars
    assert vocab.encode(".")[0] != MARKER_ID
    for w in words:
        assert vocab.decode(vocab.encode(w) + [MARKER_ID, 3]) == w
    assert vocab.token(MARKER_ID) == "."


def test_vocabulary_sorted_with_marker_first():
    vocab = Vocabulary.from_words(["cab", "bad"])
    assert vocab.chars == ["a", "b", "c", "d"]
    assert vocab.encode("abcd") == [1, 2, 3, 4]
    assert vocab.size == 5


def test_vocabulary_json_round_trip(tmp_path, unicode_path):
    vocab = Vocabulary.from_words(read_words(unicode_path))
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json") == vocab
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))["chars"] == vocab.chars


def test_build_examples_matches_the_lecture_layout():
    vocab = Vocabulary.from_words(["emma"])  # a=1 e=2 m=3
    x, y = build_examples(["emma"], vocab, block_size=3)
    assert x.dtype == np.int32 and y.dtype == np.int32
    assert x.tolist() == [[0, 0, 0], [0, 0, 2], [0, 2, 3], [2, 3, 3], [3, 3, 1]]
    assert y.tolist() == [2, 3, 3, 1, 0]


def test_build_examples_many_words_and_block_sizes(words_path):
    words = read_words(words_path)
    vocab = Vocabulary.from_words(words)
    for block_size in (1, 2, 5, 12):
        x, y = build_examples(words, vocab, block_size)
        expected_x, expected_y = [], []
        for w in words:  # the lecture's loop, verbatim in spirit
            context = [0] * block_size
            for ch in w + "\0":
                ix = 0 if ch == "\0" else vocab.encode(ch)[0]
                expected_x.append(context)
                expected_y.append(ix)
                context = context[1:] + [ix]
        assert x.tolist() == expected_x and y.tolist() == expected_y


def test_make_dataset_batches_and_shuffles_reproducibly(words_path):
    corpus = Corpus(read_words(words_path), 3)
    x, y = corpus.examples("train")
    first = [b[1].numpy().tolist() for b in make_dataset(x, y, batch_size=8, seed=1)]
    again = [b[1].numpy().tolist() for b in make_dataset(x, y, batch_size=8, seed=1)]
    assert first == again
    assert sorted(sum(first, [])) == sorted(y.tolist())
    xb, yb = next(iter(make_dataset(x, y, batch_size=8, seed=1)))
    assert xb.shape == (8, 3) and yb.shape == (8,)


@pytest.mark.parametrize("content, message", [
    (b"", "no words"),
    (b"\n \n\t\n", "no words"),
    (b"abc\x00def\n", "binary"),
    (b"caf\xe9\n", "not UTF-8"),
])
def test_bad_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_words(path)


def test_missing_file_and_too_few_words(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_words(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="at least 6 words"):
        split_words(["a", "b", "c", "d", "e"])
    assert len(split_words(["a", "b", "c", "d", "e", "f"]).val) == 1


def test_default_dataset_is_the_packaged_names_file():
    path = load_names()
    assert path.parent.name == "datasets" and path.parent.parent.name == "keras_makemore"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == data.NAMES_SHA256
    words = read_words(path)
    assert len(words) == 32033 and words[:3] == ["emma", "olivia", "ava"]
