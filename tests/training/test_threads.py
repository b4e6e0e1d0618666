"""TensorFlow's intra-op threads of a training run: the "auto" rule, the setting, and results that do not move."""

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_makemore.errors import UserError
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.threads import ONE_THREAD_BELOW, auto_intra_op_threads, step_size

_FRESH_TRAIN = """
import json, sys
import tensorflow as tf
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.recipe import train
config = TrainConfig.from_json(json.loads(sys.argv[1]))
train(config, sys.argv[2], verbose=0, num_samples=0)
print(json.dumps({"threads": tf.config.threading.get_intra_op_parallelism_threads()}))
"""


def _train_in_fresh_process(config: TrainConfig, run_dir) -> int:
    """The intra-op threads a new process ran `train(config)` with."""
    out = subprocess.run([sys.executable, "-c", _FRESH_TRAIN, json.dumps(config.to_json()), str(run_dir)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["threads"]


def test_the_rule_takes_one_thread_for_the_lecture_network_only():
    lecture_recipe, lecture_preset = TrainConfig(), TrainConfig.from_preset("lecture")
    quick = TrainConfig.from_preset("quick")
    assert step_size(lecture_recipe, 27, 3) == 11_897 * 32  # the part-2 MLP's parameters x batch 32
    assert step_size(lecture_preset, 27, 3) < ONE_THREAD_BELOW < step_size(quick, 27, 5)
    assert auto_intra_op_threads(lecture_recipe, 27, 3) == 1
    assert auto_intra_op_threads(lecture_preset, 27, 3) == 1
    assert auto_intra_op_threads(quick, 27, 5) == 0
    # A word model predicts every position: the Transformer's step counts 16 of them.
    transformer = TrainConfig.from_preset("transformer")
    assert step_size(transformer, 27, 16) == 16 * transformer.batch_size * 204_571
    assert auto_intra_op_threads(transformer, 27, 16) == 0


def test_threads_must_be_zero_or_more():
    with pytest.raises(UserError, match=r"threads must be 0 \(TensorFlow's default, one per core\) to 256, got -1"):
        TrainConfig(threads=-1).validate()


@pytest.mark.slow
def test_a_fresh_process_trains_with_the_chosen_threads_and_the_same_weights(tmp_path):
    from keras_makemore.training.run import load_model

    base = TrainConfig(steps=300, eval_every=300)
    chosen = {name: _train_in_fresh_process(config, tmp_path / name)
              for name, config in {"auto": base, "default": TrainConfig(steps=300, eval_every=300, threads=0),
                                   "three": TrainConfig(steps=300, eval_every=300, threads=3),
                                   "preset": TrainConfig.from_preset("quick", steps=300, eval_every=300)}.items()}
    assert chosen == {"auto": 1, "default": 0, "three": 3, "preset": 0}
    # The part-2 MLP's steps are bit-identical on one thread, on three and on every core.
    weights = [load_model(tmp_path / name / "model.keras").get_weights() for name in ("auto", "default", "three")]
    for other in weights[1:]:
        for a, b in zip(weights[0], other):
            np.testing.assert_array_equal(a, b)


def test_threads_asked_for_after_tensorflow_started_say_how_to_get_them(tmp_path, small_config):
    import dataclasses

    import tensorflow as tf

    from keras_makemore.training.recipe import train

    tf.constant(0)  # this process runs TensorFlow already
    running = tf.config.threading.get_intra_op_parallelism_threads()
    config = dataclasses.replace(small_config, threads=running + 5, steps=100, eval_every=100)
    with pytest.raises(UserError, match=f"threads {running + 5} can only be set before TensorFlow starts.*train in "
                                        "a new process, or leave threads unset") as raised:
        train(config, tmp_path / "run", verbose=0)
    assert raised.value.argument == "threads"
    assert not (tmp_path / "run").exists()
    # "auto" and the running number train on.
    train(dataclasses.replace(config, threads=None), tmp_path / "auto", verbose=0, num_samples=0)
    train(dataclasses.replace(config, threads=running), tmp_path / "same", verbose=0, num_samples=0)


def test_threads_do_not_make_another_run():
    from keras_makemore.training.config import config_differences

    # A run resumed, or a sweep cell reused, on other threads is the same run.
    assert config_differences(TrainConfig(), TrainConfig(threads=1)) == []
    assert config_differences(TrainConfig(), TrainConfig(threads=1, seed=1)) == [("seed", 42, 1)]
