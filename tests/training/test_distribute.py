"""Training under tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy on 2 local workers."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import run_cli

from keras_makemore.errors import UserError

_FLAGS = ["--block-size", "3", "--embed-dim", "4", "--hidden", "32", "--batch-size", "16", "--steps", "600",
          "--eval-every", "300", "--optimizer", "adam", "--lr", "0.01", "--seed", "7", "--samples", "0", "--quiet"]

_MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import find_lr_for_config, train
    out = {}
    for strategy in ("default", "mirrored"):
        config = TrainConfig(data=sys.argv[1], block_size=3, embed_dim=4, hidden_units=32, batch_size=16,
                             steps=600, eval_every=300, optimizer="adam", lr=0.01, seed=7, strategy=strategy)
        out[strategy] = train(config, f"{sys.argv[2]}/{strategy}", verbose=0).history
    out["lr"] = find_lr_for_config(config, num_steps=30).learning_rate
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_as_one_device(words_path, tmp_path):
    out = subprocess.run([sys.executable, "-c", _MIRRORED, str(words_path), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    # The two replicas train on the two halves of the very minibatch one device draws.
    for key in ("loss", "val_loss"):
        assert report["mirrored"][key] == pytest.approx(report["default"][key], rel=1e-4)
    assert json.loads((tmp_path / "mirrored" / "config.json").read_text())["strategy"] == "mirrored"
    assert 0 < report["lr"] < 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_local_workers_train_like_one(words_path, tmp_path):
    cluster = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    workers = []
    try:
        for i in range(2):
            tf_config = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}})
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "keras_makemore", "train", "--data", str(words_path), "--strategy",
                 "multiworker", "--out", str(tmp_path / "run"), *_FLAGS],
                env=env | {"TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [w.communicate(timeout=240) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], [o[1][-2000:] for o in outputs]
    assert "run saved in" in outputs[0][0] and "the chief saved the run" in outputs[1][0]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    single = run_cli("train", "--data", str(words_path), "--out", str(tmp_path / "single"), *_FLAGS)
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads((tmp_path / "single" / "history.json").read_text())
    # Same minibatches, same weights: the two workers reach the loss of one.
    for key in ("loss", "val_loss"):
        assert history[key] == pytest.approx(one[key], rel=1e-3)
    assert not (tmp_path / "run" / "backup").exists()


@pytest.mark.slow
def test_multiworker_needs_tf_config(words_path, tmp_path):
    out = run_cli("train", "--data", str(words_path), "--strategy", "multiworker", "--out", str(tmp_path / "r"),
                  *_FLAGS, env={"TF_CONFIG": ""})
    assert out.returncode == 2 and "TF_CONFIG" in out.stderr and "Traceback" not in out.stderr


def test_batch_must_split_over_replicas_and_xla_on_is_refused():
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import check_replicas

    with pytest.raises(UserError, match="multiple of 2"):
        check_replicas(TrainConfig(batch_size=15, strategy="mirrored"), 2)
    with pytest.raises(UserError, match="use xla 'auto' or 'off'"):
        check_replicas(TrainConfig(xla="on", strategy="mirrored"), 2)


@pytest.mark.slow
def test_lr_auto_on_a_cluster_is_refused_with_a_recipe(words_path, tmp_path):
    tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{_free_port()}"]}, "task": {"type": "worker", "index": 0}})
    out = run_cli("train", "--data", str(words_path), "--strategy", "multiworker", "--lr", "auto",
                  "--out", str(tmp_path / "r"), env={"TF_CONFIG": tf_config})
    assert out.returncode == 2 and "lr-find" in out.stderr and "Traceback" not in out.stderr
