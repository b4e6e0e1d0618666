import keras
import numpy as np

from keras_makemore.models.mlp import build_model, model_shape


def test_layers_and_shapes():
    model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=200)
    assert [type(l).__name__ for l in model.layers] == ["InputLayer", "Embedding", "Flatten", "Dense", "Dense"]
    assert model.get_layer("hidden").activation is keras.activations.tanh
    logits = model(np.zeros((5, 3), np.int32))
    assert logits.shape == (5, 27)
    # C: 27x10, W1: 30x200 + 200, W2: 200x27 + 27 -- the lecture's 11,897 parameters
    assert model.count_params() == 27 * 10 + 30 * 200 + 200 + 200 * 27 + 27 == 11897
    assert model_shape(model) == {"vocab_size": 27, "block_size": 3, "embed_dim": 10, "hidden_units": 200,
                                  "dropout": 0.0, "direct_connections": False}


def test_other_sizes():
    model = build_model(vocab_size=100, block_size=8, embed_dim=24, hidden_units=64)
    assert model(np.ones((2, 8), np.int32)).shape == (2, 100)
    assert model.get_layer("concat").output.shape == (None, 8 * 24)


def test_keras_format_round_trip(tmp_path):
    model = build_model(vocab_size=30, block_size=4, embed_dim=5, hidden_units=16)
    x = np.random.default_rng(0).integers(0, 30, (64, 4)).astype(np.int32)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert model_shape(loaded) == model_shape(model)


def test_dropout_and_direct_connections():
    model = build_model(vocab_size=27, block_size=3, embed_dim=10, hidden_units=50, dropout=0.2,
                        direct_connections=True)
    x = np.ones((4, 3), np.int32)
    assert model(x).shape == (4, 27)
    assert model.get_layer("direct").kernel.shape == (30, 27)  # W3: embeddings straight to the output
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.array_equal(model(x, training=True), model(x, training=False))
    shape = model_shape(model)
    assert shape["dropout"] == 0.2 and shape["direct_connections"] is True
