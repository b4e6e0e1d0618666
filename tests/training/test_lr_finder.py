"""The learning-rate finder: on our model, on unrelated models, under tf.distribute, and from the CLI."""

import csv
import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli

from keras_makemore.errors import UserError
from keras_makemore.training.lr_finder import LRFinder, find_lr, suggest_learning_rates


def _regression_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32") + 0.7 + 0.1 * rng.normal(size=n)).astype("float32")
    return x, y[:, None]


def _regression_model(optimizer, seed=0, **compile_args):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", **compile_args)
    return model


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def test_sweep_leaves_weights_and_optimizer_exactly_as_they_were():
    x, y = _regression_data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model, twin = (_regression_model(keras.optimizers.Adam(0.01)) for _ in range(2))
    for m in (model, twin):  # give Adam's moments and the step counter real values
        m.fit(ds, epochs=2, verbose=0, shuffle=False)
    before_weights, before_optimizer = _values(model.variables), _values(model.optimizer.variables)

    result = find_lr(model, ds, start_lr=1e-4, end_lr=10.0, num_steps=40)

    assert len(result.losses) >= 20
    for a, b in zip(_values(model.variables), before_weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_values(model.optimizer.variables), before_optimizer):
        np.testing.assert_array_equal(a, b)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    # ... so the next fit continues exactly as the twin that never swept.
    for m in (model, twin):
        m.fit(ds, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(_values(model.variables), _values(twin.variables)):
        np.testing.assert_array_equal(a, b)


def test_losses_are_per_step_at_the_swept_rates():
    """Replay plain gradient descent on a linear model in NumPy: the same loss at every step."""
    x, y = _regression_data(n=64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    w, b = (v.astype(np.float64) for v in model.get_weights())
    finder = LRFinder(start_lr=1e-3, end_lr=0.3, num_steps=20, diverge_factor=None, skip_start=0, skip_end=0)
    model.fit(x, y, batch_size=64, epochs=50, shuffle=False, callbacks=[finder], verbose=0)

    result = finder.result
    assert result.stop_reason == "completed" and len(result.losses) == 20
    np.testing.assert_allclose(result.learning_rates, np.geomspace(1e-3, 0.3, 20), rtol=1e-6)
    expected = []
    for rate in result.learning_rates:
        error = x @ w + b - y
        expected.append(float(np.mean(error**2)))
        w -= rate * 2 * x.T @ error / len(x)
        b -= rate * 2 * error.mean(axis=0)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-4)
    # Not Keras' running mean of the epoch: each point is its own step's loss.
    assert result.losses[-1] < np.mean(result.losses)


def test_divergence_stops_the_sweep_and_everything_is_put_back():
    x, y = _regression_data()
    model = _regression_model(keras.optimizers.SGD(0.01))
    before = _values(model.variables)
    result = find_lr(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                     start_lr=1e-3, end_lr=1e6, num_steps=100)
    assert result.stop_reason in ("diverged", "non-finite loss")
    assert len(result.losses) < 100
    assert result.learning_rates[-1] < 1e6
    for a, b in zip(_values(model.variables), before):
        np.testing.assert_array_equal(a, b)


def test_a_learning_rate_schedule_is_swept_and_put_back():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([5], [0.01, 0.001])
    x, y = _regression_data()
    model = _regression_model(keras.optimizers.SGD(schedule))
    result = find_lr(model, x, y, batch_size=32, start_lr=1e-3, end_lr=1e6, num_steps=100)
    assert result.stop_reason in ("diverged", "non-finite loss")  # so the swept rates were really used
    assert model.optimizer._learning_rate is schedule
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)  # trains on with the schedule
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.001)
    assert all(math.isfinite(v) for v in history.history["loss"])


def test_negative_loss_and_a_wrapped_optimizer():
    """A loss below zero is no divergence; a LossScaleOptimizer's own state comes back too."""
    x, _ = _regression_data()
    y = x + 0.3 * np.random.default_rng(2).normal(size=x.shape).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="identity")])
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01)),
                  loss=keras.losses.CosineSimilarity())  # -1 at best
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = _values(model.variables + model.optimizer.variables)
    result = find_lr(model, x, y, batch_size=32, start_lr=1e-4, end_lr=1e-2, num_steps=30)
    assert result.stop_reason == "completed" and max(result.losses) < 0
    for a, b in zip(_values(model.variables + model.optimizer.variables), before):
        np.testing.assert_array_equal(a, b)


def test_callback_in_a_users_own_fit_of_an_image_classifier():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(80, 8, 8, 1)).astype("float32")
    labels = (images.mean(axis=(1, 2, 3)) > 0).astype("int32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2),
    ])
    model.compile(optimizer=keras.optimizers.RMSprop(), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first_batch_loss = model.evaluate(images[:16], labels[:16], batch_size=16, verbose=0)[0]

    finder = LRFinder(start_lr=1e-5, end_lr=1.0, num_steps=30)
    history = model.fit(images, labels, batch_size=16, epochs=20, shuffle=False, callbacks=[finder], verbose=0)

    result = finder.result
    assert len(result.losses) == 30 or result.stop_reason != "completed"
    assert len(history.history["loss"]) <= 7  # 5 batches an epoch: the fit stopped with the sweep
    assert result.losses[0] == pytest.approx(first_batch_loss, rel=1e-5)
    assert set(result.suggestions) == {"valley", "steepest", "minimum"}
    assert 1e-5 <= result.learning_rate <= 1.0


def test_steps_per_execution_is_refused_by_the_callback_and_handled_by_find_lr():
    x, y = _regression_data()
    model = _regression_model("sgd", steps_per_execution=4)
    with pytest.raises(UserError, match="steps_per_execution=1"):
        model.fit(x, y, batch_size=32, epochs=1, callbacks=[LRFinder()], verbose=0)
    result = find_lr(model, x, y, batch_size=32, start_lr=1e-4, end_lr=0.1, num_steps=24)
    assert len(result.losses) == 24 and len(set(result.losses)) == 24
    assert model.steps_per_execution == 4


def test_suggestions_land_on_a_known_valley():
    log_rates = np.linspace(-7, 1, 161)  # 20 points a decade
    rng = np.random.default_rng(0)
    # Flat at 3 up to 1e-4, down a tanh centred on 10^-2.5 to 1 at 1e-1, then up steeply.
    losses = 2 - np.tanh(2 * (log_rates + 2.5)) + np.where(log_rates > -1, 20 * (log_rates + 1) ** 2, 0)
    losses = np.where(log_rates < -4, 3 + 1e-3 * rng.normal(size=len(log_rates)), losses)
    suggestions = suggest_learning_rates(10**log_rates, losses, skip_start=10, skip_end=5)

    def decade(name):
        return math.log10(suggestions[name].learning_rate)

    assert decade("steepest") == pytest.approx(-2.5, abs=0.05)
    assert decade("minimum") == pytest.approx(-2.0, abs=0.15)  # a tenth of the bottom at 1e-1
    assert -3.5 <= decade("valley") <= -2.0  # in the steep half of the descent
    assert all(s.rule for s in suggestions.values())
    assert suggest_learning_rates([1e-3, 1e-2], [2.0, 1.0]) == {}


def test_result_saves_png_csv_and_json(tmp_path):
    x, y = _regression_data()
    model = _regression_model(keras.optimizers.SGD())
    result = find_lr(model, x, y, batch_size=32, start_lr=1e-5, end_lr=1e3, num_steps=80)
    result.save(tmp_path)

    png = (tmp_path / "lr_find.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(tmp_path / "lr_find.png").shape
    assert width > 600 and height > 400
    rows = list(csv.DictReader(open(tmp_path / "lr_find.csv")))
    assert len(rows) == len(result.losses)
    assert float(rows[3]["learning_rate"]) == pytest.approx(result.learning_rates[3], rel=1e-5)
    saved = json.loads((tmp_path / "lr_find.json").read_text())  # strict JSON: no NaN
    assert saved["suggestions"]["valley"]["learning_rate"] == pytest.approx(result.suggestions["valley"].learning_rate)
    assert saved["stop_reason"] == result.stop_reason and len(saved["losses"]) == len(result.losses)
    assert "valley" in result.summary() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr must be above 0 and below end_lr, got start_lr=1.0 and end_lr=0.1"),
    ({"num_steps": 2}, "num_steps"),
    ({"mode": "cubic"}, "exponential, linear"),
    ({"smoothing": 1.0}, "smoothing"),
    ({"suggest": "best"}, "valley"),
])
def test_bad_arguments_say_how_to_fix_them(kwargs, message):
    with pytest.raises(UserError, match=message):
        LRFinder(**kwargs)


def test_find_lr_needs_a_compiled_model():
    with pytest.raises(UserError, match="compile"):
        find_lr(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), *_regression_data())


_MIRRORED = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_makemore.training.lr_finder import find_lr

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], "float32"))[:, None]
    def sweep(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(momentum=0.9), loss="mse")
        before = [v.numpy() for v in model.variables + model.optimizer.variables]
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
        result = find_lr(model, ds, start_lr=1e-4, end_lr=100.0, num_steps=60)
        after = [v.numpy() for v in model.variables + model.optimizer.variables]
        return result, all(np.array_equal(a, b) for a, b in zip(before, after))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    distributed, restored = sweep(mirrored)
    single, _ = sweep(tf.distribute.get_strategy())
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "restored": restored,
                      "distributed": distributed.losses.tolist(), "single": single.losses.tolist(),
                      "stop": distributed.stop_reason}))
""")


@pytest.mark.slow
def test_sweep_under_mirrored_strategy_matches_one_device():
    out = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["restored"]
    n = min(len(report["single"]), len(report["distributed"]))
    assert n >= 30 and report["stop"] in ("diverged", "non-finite loss", "completed")
    # Two replicas of 32 compute the same steps as one device with batches of 64.
    np.testing.assert_allclose(report["distributed"][: n - 5], report["single"][: n - 5], rtol=1e-3)


def test_lecture_mlp_on_names_suggests_a_rate_near_the_lectures(names_path):
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import find_lr_for_config

    result = find_lr_for_config(TrainConfig(data=str(names_path)))  # block 3, embed 10, hidden 200, batch 32, SGD
    assert 0.03 <= result.learning_rate <= 0.3, result.summary()


@pytest.mark.slow
def test_cli_lr_find_writes_plot_and_tables(tmp_path, words_path):
    out = tmp_path / "sweep"
    result = run_cli("lr-find", "--data", str(words_path), "--out", str(out), "--hidden", "16",
                     "--embed-dim", "4", "--batch-size", "16", "--num-steps", "60", "--end-lr", "100")
    assert result.returncode == 0, result.stderr
    assert "suggested learning rate: " in result.stdout and "valley" in result.stdout
    rate = float(result.stdout.split("suggested learning rate: ")[1].split()[0])
    assert 1e-7 <= rate <= 100
    assert f"keras-makemore train --out {out} --lr {rate:g}" in result.stdout
    for name in ("lr_find.png", "lr_find.csv", "lr_find.json"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_cli_train_lr_auto_trains_with_the_suggestion(tmp_path, words_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(words_path), "--out", str(run_dir), "--lr", "auto", "--steps", "200",
                     "--eval-every", "100", "--hidden", "16", "--embed-dim", "4", "--samples", "0", "--quiet")
    assert result.returncode == 0, result.stderr
    chosen = float(result.stdout.split("lr-find: training with --lr ")[1].split()[0])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["lr"] == chosen
    sweep = json.loads((run_dir / "lr_find.json").read_text())
    assert chosen == pytest.approx(sweep["suggestions"]["valley"]["learning_rate"], rel=5e-3)
    assert (run_dir / "lr_find.png").is_file() and (run_dir / "model.keras").is_file()


@pytest.mark.slow
def test_cli_lr_errors_are_one_line(tmp_path, words_path):
    cases = [
        ("train", "--resume", str(tmp_path), "--lr", "auto"),
        ("lr-find", "--data", str(words_path), "--out", str(tmp_path / "x"), "--start-lr", "1", "--end-lr", "0.1"),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    bad = run_cli("train", "--lr", "fast")
    assert bad.returncode == 2 and "expected a number such as 0.1, or auto" in bad.stderr
