import numpy as np
import pytest

from keras_makemore.errors import UserError
from keras_makemore.sampling import next_token_probabilities, novelty, pick_tokens, sample_words


def test_same_seed_same_words(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    a = sample_words(model, vocab, 3, 50, seed=123)
    b = sample_words(model, vocab, 3, 50, seed=123)
    c = sample_words(model, vocab, 3, 50, seed=124)
    assert a == b and a != c
    assert all(set(w) <= set(vocab.chars) for w in a)


def test_prefix_top_k_and_length(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    words = sample_words(model, vocab, 3, 20, seed=0, prefix="ma", max_length=6)
    assert all(w.startswith("ma") and len(w) <= 6 for w in words)
    greedy = sample_words(model, vocab, 3, 5, seed=0, top_k=1)
    assert len(set(greedy)) == 1  # top-1 ignores the random numbers


def test_low_temperature_concentrates(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    cold = sample_words(model, vocab, 3, 100, seed=0, temperature=0.05)
    hot = sample_words(model, vocab, 3, 100, seed=0, temperature=3.0)
    assert len(set(cold)) < len(set(hot))


def test_explicit_uniforms_drive_the_choice(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    u = np.random.default_rng(5).random((10, 32))
    assert sample_words(model, vocab, 3, 10, uniforms=u, max_length=32) == \
        sample_words(model, vocab, 3, 10, uniforms=u.copy(), max_length=32)


def test_inverse_cdf_pick():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    assert pick_tokens(probs, np.array([0.05, 0.49])).tolist() == [0, 0]
    assert pick_tokens(probs, np.array([0.25, 0.51])).tolist() == [1, 1]
    assert pick_tokens(probs, np.array([0.999999, 0.999999])).tolist() == [2, 1]


def test_probabilities_temperature_and_top_k():
    logits = np.log(np.array([[0.1, 0.2, 0.7]]))
    np.testing.assert_allclose(next_token_probabilities(logits), [[0.1, 0.2, 0.7]])
    np.testing.assert_allclose(next_token_probabilities(logits, top_k=2), [[0, 2 / 9, 7 / 9]])
    sharp = next_token_probabilities(logits, temperature=0.5)
    np.testing.assert_allclose(sharp, np.array([[0.01, 0.04, 0.49]]) / 0.54)


def test_novelty():
    assert novelty(["a", "b", "c", "d"], ["a", "x"]) == 0.75
    assert novelty([], ["a"]) == 0.0


def test_bad_arguments(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    with pytest.raises(UserError, match="not in the vocabulary"):
        sample_words(model, vocab, 3, 2, prefix="Ω")
    with pytest.raises(UserError, match="temperature"):
        sample_words(model, vocab, 3, 2, temperature=0)
