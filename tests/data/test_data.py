import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_makemore.data import reading
from keras_makemore.data.corpus import Corpus
from keras_makemore.data.reading import load_names, pack_words, read_words
from keras_makemore.data.split import MIN_WORDS, hash_split, split_words
from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.data.windows import build_examples, make_dataset, random_minibatches
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
    assert path.parent.name == "data" and path.parent.parent.name == "keras_makemore"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == reading.NAMES_SHA256
    words = read_words(path)
    assert len(words) == 32033 and words[:3] == ["emma", "olivia", "ava"]


# --- numpy preparation against straightforward references -------------------------------------------------------

def _reference_examples(words, block_size):
    """The lecture's loop over a list of words, with the lecture's vocabulary."""
    stoi = {ch: i + 1 for i, ch in enumerate(sorted(set("".join(words))))}
    xs, ys = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + "\0":
            ix = 0 if ch == "\0" else stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    return np.array(xs, dtype=np.int32).reshape(-1, block_size), np.array(ys, dtype=np.int32)


_word = st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=9)
_fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(st.lists(st.one_of(_word, st.sampled_from(["emma", "zoë", "日向", "o.neil", "anne marie"])), min_size=6,
                max_size=40), st.integers(1, 6), st.integers(0, 3))
def test_corpus_examples_equal_the_reference_loop(words, block_size, seed):
    corpus = Corpus(words, block_size, seed=seed)
    split = split_words(words, seed)
    assert corpus.split == split and corpus.vocab == Vocabulary.from_words(words)
    for name in ("train", "val", "test"):
        x, y = corpus.examples(name)
        ref_x, ref_y = _reference_examples(split[name], block_size)
        # The reference numbers the characters of its split only; map both through the characters.
        chars = np.array([MARKER_ID] + [ord(c) for c in corpus.vocab.chars])
        ref_chars = np.array([MARKER_ID] + [ord(c) for c in sorted(set("".join(split[name])))])
        assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == ref_x.shape
        assert (chars[x] == ref_chars[ref_x]).all() and (chars[y] == ref_chars[ref_y]).all()
        windows = corpus.windows(name)
        assert len(windows) == len(x) and windows.ids.dtype == np.uint8


_line = st.text(st.sampled_from(list("ab é日") + ["\r", "\t", "\u3000", "\x85", "\x1c", "\u2028", "\x0b"]),
                max_size=6)


@_fast
@given(st.lists(_line, min_size=1, max_size=30), st.booleans(), st.booleans())
def test_from_file_reads_what_read_words_reads(tmp_path_factory, lines, bom, final_newline):
    path = tmp_path_factory.mktemp("lines") / "w.txt"
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    try:
        words = read_words(path)
    except UserError:
        with pytest.raises(UserError, match="no words"):
            Corpus.from_file(path, 3)
        return
    if len(words) < MIN_WORDS:
        with pytest.raises(UserError, match="too few"):
            Corpus.from_file(path, 3)
        return
    corpus = Corpus.from_file(path, 3)
    assert corpus.words == words and corpus.split == split_words(words)
    assert corpus.max_word_length == max(map(len, words))
    expected = Corpus(words, 3)
    for name in ("train", "val", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(corpus.examples(name), expected.examples(name)))


def test_whitespace_table_holds_every_space_str_strip_strips():
    import sys

    spaces = [c for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert max(spaces) == reading._LAST_SPACE
    assert np.flatnonzero(reading._whitespace_table()).tolist() == spaces


def test_names_examples_unchanged_and_one_byte_per_character(names_path):
    corpus = Corpus.from_file(names_path, 3)
    assert corpus.split == split_words(read_words(names_path)) and corpus.split_rule == "lecture"
    windows = corpus.windows("train")
    # One id per character and end marker, plus the leading markers: 4x less than one int32 per example.
    assert windows.ids.nbytes == len(windows) + 3
    x, y = corpus.examples("train")
    ref_x, ref_y = _reference_examples(corpus.split.train, 3)
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)


def test_windows_draw_the_minibatches_of_the_arrays(words_path):
    windows = Corpus.from_file(words_path, 4).windows("train")
    x, y = windows.numpy()
    from_arrays = list(random_minibatches(x, y, 16, seed=3, steps=230, first_step=17))
    from_windows = list(windows.random_minibatches(16, seed=3, steps=230, first_step=17))
    assert len(from_windows) == 213
    for (xa, ya), (xw, yw) in zip(from_arrays, from_windows):
        assert xa.dtype == xw.dtype == tf.int32
        assert np.array_equal(xa, xw) and np.array_equal(ya, yw)


def test_windows_batches_in_order_or_spread(words_path):
    windows = Corpus.from_file(words_path, 3).windows("val")
    x, y = windows.numpy()
    batches = list(windows.batches(7))
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    some = list(windows.batches(7, max_examples=10))
    picked = np.arange(10) * len(x) // 10
    assert np.array_equal(np.concatenate([b[1] for b in some]), y[picked])
    assert sum(len(b[1]) for b in windows.batches(7, max_examples=10**6)) == len(x)


def test_above_the_limit_the_split_is_by_hash_and_stable(monkeypatch, words_path):
    words = read_words(words_path)
    monkeypatch.setattr("keras_makemore.data.corpus.LECTURE_SPLIT_MAX_WORDS", 10)
    corpus = Corpus(words, 3, seed=5)
    assert corpus.split_rule == "hash"
    buckets = hash_split(*pack_words(words), seed=5)
    assert corpus.split.val == [w for w, b in zip(words, buckets) if b == 1]
    # A word's split depends on its text and the seed alone: not on its neighbours, not on the order.
    assert (hash_split(*pack_words(words[::-1]), seed=5) == buckets[::-1]).all()
    assert not (hash_split(*pack_words(words), seed=6) == buckets).all()
    # About 80/10/10 on many words.
    many = np.bincount(hash_split(*pack_words([f"w{i}" for i in range(20_000)])), minlength=3) / 20_000
    assert np.allclose(many, [0.8, 0.1, 0.1], atol=0.01)


@pytest.mark.slow  # a new Python process: the fast selection leaves processes out
def test_hash_split_is_the_same_in_another_process(words_path):
    program = ("import sys; from keras_makemore.data.reading import pack_words, read_words; "
               "from keras_makemore.data.split import hash_split; "
               "print(hash_split(*pack_words(read_words(sys.argv[1])), seed=9).tolist())")
    outputs = {subprocess.run([sys.executable, "-c", program, str(words_path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
               for seed in ("1", "2")}
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == hash_split(*pack_words(read_words(words_path)), seed=9).tolist()


def test_known_finds_the_words_of_a_split(unicode_path):
    corpus = Corpus.from_file(unicode_path, 3)
    queries = read_words(unicode_path) + ["zoe", "日", "Ω", "mary", ""]
    for name in ("train", "val", "test"):
        assert corpus.known(queries, name) == [w for w in queries if w in corpus.split[name]]


def test_unknown_character_with_a_saved_vocabulary(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("emma\nava\nmia\nzoë\nella\nanna\n", encoding="utf-8")
    corpus = Corpus.from_file(path, 3, vocab=Vocabulary.from_words(["emma", "ava", "mia", "zo", "ella", "anna"]))
    with pytest.raises(UserError, match="'ë' of the data is not in the vocabulary"):
        for name in ("train", "val", "test"):
            corpus.windows(name)
