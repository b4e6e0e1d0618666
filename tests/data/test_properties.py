"""Property-based tests: random Unicode input either works or gives the clear error, never a crash."""

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_makemore.data.reading import read_words
from keras_makemore.data.split import split_words
from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.data.windows import build_examples
from keras_makemore.errors import UserError
from keras_makemore.sampling.words import sample_words

# Text that a UTF-8 file can hold: any code point but lone surrogates.
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
words = st.lists(st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=12),
                 min_size=1, max_size=30)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(st.one_of(unicode_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=200)))
def test_loader_works_or_says_why(content):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.txt"
        path.write_bytes(content)
        try:
            result = read_words(path)
        except UserError as e:
            assert "\n" not in str(e) and str(path) in str(e)
            return
    assert result and all(w == w.strip() and w and "\n" not in w for w in result)
    try:
        split = split_words(result, seed=0)
    except UserError as e:
        assert "at least 6 words" in str(e)
        return
    assert sorted(split.train + split.val + split.test) == sorted(result)


@fast
@given(words)
def test_vocabulary_round_trip(word_list):
    vocab = Vocabulary.from_words(word_list)
    assert vocab.chars == sorted(set("".join(word_list)))
    for w in word_list:
        ids = vocab.encode(w)
        assert MARKER_ID not in ids
        assert vocab.decode(ids) == w
    with tempfile.TemporaryDirectory() as d:
        vocab.save(Path(d) / "vocab.json")
        assert Vocabulary.load(Path(d) / "vocab.json") == vocab


@fast
@given(words, st.integers(1, 6))
def test_examples_cover_every_character_and_end(word_list, block_size):
    vocab = Vocabulary.from_words(word_list)
    x, y = build_examples(word_list, vocab, block_size)
    assert x.shape == (sum(len(w) + 1 for w in word_list), block_size)
    assert (y == MARKER_ID).sum() == len(word_list)
    assert ((x >= 0) & (x < vocab.size)).all()


@fast
@given(words, st.integers(0, 2**31 - 1), st.floats(0.05, 5.0), st.one_of(st.none(), st.integers(1, 40)),
       st.integers(1, 20))
def test_sampler_stays_in_the_vocabulary(word_list, seed, temperature, top_k, max_length):
    vocab = Vocabulary.from_words(word_list)
    logits_table = np.random.default_rng(seed).normal(size=(vocab.size,)) * 3

    def model(contexts):  # any callable from contexts to logits is a model to the sampler
        return np.tile(logits_table, (len(contexts), 1)) + contexts[:, -1:] * 0.1

    samples = sample_words(model, vocab, 3, 7, seed=seed, temperature=temperature, top_k=top_k,
                           max_length=max_length)
    assert len(samples) == 7
    assert all(len(s) <= max_length and set(s) <= set(vocab.chars) for s in samples)
    assert samples == sample_words(model, vocab, 3, 7, seed=seed, temperature=temperature, top_k=top_k,
                                   max_length=max_length)
