import math

import numpy as np
import pytest
import tensorflow as tf

from keras_makemore.errors import UserError
from keras_makemore.sampling.graph import pick_tokens, seeded_uniforms
from keras_makemore.sampling.scoring import WordScore, read_word_file, score_words
from keras_makemore.sampling.words import iter_words, novelty, sample_words


def test_same_seed_same_words(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    a = sample_words(model, vocab, 3, 50, seed=123)
    b = sample_words(model, vocab, 3, 50, seed=123)
    c = sample_words(model, vocab, 3, 50, seed=124)
    assert a == b and a != c
    assert all(set(w) <= set(vocab.chars) for w in a)
    assert sample_words(model, vocab, 3, 50, seed=-1) == sample_words(model, vocab, 3, 50, seed=-1) != a


def test_words_are_rows_of_one_stream(trained_run):
    """Any number of words is a prefix of the same stream, and excluding words only skips rows."""
    model, vocab = trained_run.model, trained_run.corpus.vocab
    many = sample_words(model, vocab, 3, 300, seed=5)
    assert sample_words(model, vocab, 3, 30, seed=5) == many[:30]
    banned = set(many[:10])
    kept = sample_words(model, vocab, 3, 30, seed=5, exclude=banned)
    assert kept == [w for w in many if w not in banned][:30]
    assert not banned & set(kept)


def test_exclude_gives_up_after_max_draws(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    first = sample_words(model, vocab, 3, 40, seed=2)
    short = sample_words(model, vocab, 3, 40, seed=2, exclude={first[0]}, max_draws=20)
    assert short == [w for w in first[:20] if w != first[0]] and len(short) < 40
    greedy = set(sample_words(model, vocab, 3, 5, seed=0, top_k=1))
    assert sample_words(model, vocab, 3, 5, seed=0, top_k=1, exclude=greedy) == []  # 500 tries, none new


def test_controls_prefix_lengths_top_k_top_p(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    words = sample_words(model, vocab, 3, 40, seed=0, prefix="ma", max_length=6)
    assert all(w.startswith("ma") and len(w) <= 6 for w in words)
    assert all(len(w) >= 5 for w in sample_words(model, vocab, 3, 40, seed=0, min_length=5))
    assert all(len(w) == 4 for w in sample_words(model, vocab, 3, 40, seed=0, min_length=4, max_length=4))
    greedy = sample_words(model, vocab, 3, 5, seed=0, top_k=1)
    assert len(set(greedy)) == 1  # top-1 ignores the random numbers
    assert sample_words(model, vocab, 3, 5, seed=0, top_p=1e-6) == greedy  # so does a tiny nucleus
    full = sample_words(model, vocab, 3, 100, seed=0)
    assert sample_words(model, vocab, 3, 100, seed=0, top_p=1.0, top_k=vocab.size) == full
    assert len(set(sample_words(model, vocab, 3, 100, seed=0, top_p=0.5))) < len(set(full))


def test_low_temperature_concentrates(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    cold = sample_words(model, vocab, 3, 100, seed=0, temperature=0.05)
    hot = sample_words(model, vocab, 3, 100, seed=0, temperature=3.0)
    assert len(set(cold)) < len(set(hot))


def _pick(probs, u, t=5, temperature=1.0, top_k=0, top_p=1.0, min_length=0):
    return pick_tokens(tf.math.log(tf.constant(probs, tf.float32)), tf.constant(u, tf.float32), tf.constant(t),
                       tf.constant(temperature), tf.constant(top_k), tf.constant(top_p),
                       tf.constant(min_length)).numpy().tolist()


def test_pick_rule_inverse_cdf_top_k_top_p_min_length():
    probs = [[0.1, 0.2, 0.7], [0.5, 0.5, 1e-9]]
    assert _pick(probs, [0.05, 0.49]) == [0, 0]
    assert _pick(probs, [0.25, 0.51]) == [1, 1]
    assert _pick(probs, [0.999999, 0.999999]) == [2, 1]
    assert _pick([[0.1, 0.2, 0.7]] * 3, [0.01, 0.5, 0.99], top_k=1) == [2, 2, 2]
    assert _pick([[0.1, 0.2, 0.7]] * 3, [0.01, 0.2, 0.5], top_k=2) == [1, 1, 2]  # 0.2/0.9 < 0.5
    assert _pick([[0.1, 0.2, 0.7]] * 2, [0.01, 0.99], top_p=0.6) == [2, 2]  # 0.7 alone reaches p
    assert _pick([[0.1, 0.2, 0.7]] * 2, [0.01, 0.99], top_p=0.75) == [1, 2]
    marker_first = [[0.9, 0.05, 0.05]] * 2
    assert _pick(marker_first, [0.5, 0.5], t=2, min_length=3) == [1, 1]  # the marker may not end it yet
    assert _pick(marker_first, [0.5, 0.5], t=3, min_length=3) == [0, 0]
    # Far below the likeliest token the weights underflow; the marker's ban still holds.
    assert _pick([[1.0, 1e-30, 1e-30]], [0.5], t=0, temperature=0.01, min_length=1) == [1]


def test_tied_logits_are_cut_the_same_in_a_row_alone_and_in_a_batch():
    """Equal logits are one tie wherever they lie in the batch: TensorFlow's exp gives equal inputs weights an ulp
    apart between its vectorised and scalar paths (a row of 27 alone takes both), which once broke ties one way in
    a call of one word and the other in a call of 400."""
    rng = np.random.default_rng(0)
    rows, vocab = 400, 27
    logits = np.full((rows, vocab), -0.1353, np.float32)  # a bigram row: the characters never seen after it tie
    logits[np.arange(rows)[:, None], rng.integers(0, vocab, (rows, 3))] = rng.normal(0, 0.2, (rows, 3))
    uniforms = rng.random(rows).astype(np.float32)
    for controls in ({"top_k": 6}, {"top_p": 0.9}, {"top_k": 6, "top_p": 0.9, "temperature": 1.4, "min_length": 3}):
        args = (tf.constant(1), tf.constant(controls.get("temperature", 1.0)), tf.constant(controls.get("top_k", 0)),
                tf.constant(controls.get("top_p", 1.0)), tf.constant(controls.get("min_length", 0)))
        batch = pick_tokens(tf.constant(logits), tf.constant(uniforms), *args).numpy()
        alone = [pick_tokens(tf.constant(logits[i:i + 1]), tf.constant(uniforms[i:i + 1]), *args).numpy()[0]
                 for i in range(rows)]
        np.testing.assert_array_equal(alone, batch, err_msg=str(controls))
        assert len(set(batch.tolist())) > 10  # the tie is kept: many tokens are drawn, not only the top three


def test_seeded_uniforms_rows_do_not_depend_on_the_chunk():
    whole = seeded_uniforms(9, 50, 8)
    np.testing.assert_array_equal(seeded_uniforms(9, 20, 8, first_row=30), whole[30:])


@pytest.mark.parametrize("kwargs, argument", [
    ({"temperature": 0}, "temperature"), ({"temperature": math.inf}, "temperature"),
    ({"temperature": math.nan}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"), ({"top_p": math.nan}, "top_p"), ({"seed": 2**31}, "seed"),
    ({"num_samples": -1}, "num_samples"), ({"max_draws": -5}, "max_draws"),
    ({"min_length": 5, "max_length": 3}, "min_length"), ({"max_length": 0}, "max_length"),
    ({"prefix": "abcdef", "max_length": 6}, "prefix"),
])
def test_bad_arguments_name_the_argument(trained_run, kwargs, argument):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    with pytest.raises(UserError, match=f"^{argument}") as e:
        iter_words(model, vocab, 3, **{"num_samples": 2, **kwargs})
    assert e.value.argument == argument


def test_unknown_prefix_character(trained_run):
    with pytest.raises(UserError, match="not in the vocabulary"):
        sample_words(trained_run.model, trained_run.corpus.vocab, 3, 2, prefix="Ω")


def test_novelty():
    assert novelty(["a", "b", "c", "d"], ["a", "x"]) == 0.75
    assert novelty([], ["a"]) == 0.0


def test_scores_are_the_models_log_probabilities(trained_run):
    model, vocab = trained_run.model, trained_run.corpus.vocab
    words = ["emma", "ava", "", "zzzzzzzzzz"]
    scores = score_words(model, vocab, words)
    assert [s.word for s in scores] == words
    for s in scores:
        ids = [0, 0, 0] + vocab.encode(s.word) + [0]
        contexts = np.array([ids[i:i + 3] for i in range(len(s.word) + 1)], np.int32)
        log_probs = tf.nn.log_softmax(model(contexts)).numpy().astype(np.float64)
        expected = sum(log_probs[i, ids[i + 3]] for i in range(len(s.word) + 1))
        assert s.log_prob == pytest.approx(expected, abs=1e-4)
        assert s.nll == pytest.approx(-expected / (len(s.word) + 1), abs=1e-5)
        assert s.perplexity == pytest.approx(math.exp(s.nll))
    assert score_words(model, vocab, []) == []
    assert WordScore("a", -2.0, 1.0).to_json() == {"word": "a", "nll": 1.0, "log_prob": -2.0,
                                                   "perplexity": math.e}


def test_score_file_errors_give_the_line_not_the_content(trained_run, tmp_path):
    vocab = trained_run.corpus.vocab
    path = tmp_path / "words.txt"
    path.write_text("emma\n\nava\nsecret-Ω-token\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 4") as e:
        read_word_file(path, vocab)
    assert "secret" not in str(e.value) and "Ω" not in str(e.value)
    path.write_text("emma\nava\n", encoding="utf-8")
    assert read_word_file(path, vocab) == ["emma", "ava"]
