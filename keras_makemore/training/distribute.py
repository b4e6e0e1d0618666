"""Choose a `tf.distribute` strategy for `train` and tell the chief worker from the others.

`train` builds, compiles and fits the model under the strategy's scope; Keras
and TensorFlow do the rest (replicated variables, all-reduced gradients). Only
the chief writes into the run directory: under `MultiWorkerMirroredStrategy`
the other workers write their checkpoints into a temporary directory, as the
Keras multi-worker guide does.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import tensorflow as tf

from keras_makemore.errors import UserError
from keras_makemore.training.config import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy named `name`: one of `STRATEGIES`.

    `"default"` is TensorFlow's default strategy (one device, no replicas);
    `"mirrored"` replicates the model on every local GPU, or on every logical
    CPU device when there is no GPU; `"multiworker"` replicates it on every
    worker of the cluster described by the `TF_CONFIG` environment variable
    (create it before any other TensorFlow work in the process).

    Example:

    ```python
    strategy = make_strategy("mirrored")
    with strategy.scope():
        model = build_model(vocab_size=27)
        model.compile(optimizer="adam", loss=...)
    ```
    """
    if name not in STRATEGIES:
        raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}", argument="strategy")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError("strategy 'multiworker' needs the cluster in TF_CONFIG: set it on each worker "
                        "(see the README's multi-worker recipe)")
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise UserError('TF_CONFIG is malformed: expected {"cluster": {"worker": ["host:port", ...]}, '
                        '"task": {"type": "worker", "index": N}}') from None
    if not isinstance(workers, list) or not workers:
        raise UserError("TF_CONFIG lists no workers: give cluster.worker as a list of host:port")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run: always, except on the non-chief workers of a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


@contextlib.contextmanager
def worker_dir(run_dir: Path, chief: bool) -> Iterator[Path]:
    """`run_dir` on the chief; elsewhere a temporary directory, removed afterwards."""
    if chief:
        yield run_dir
        return
    tmp = Path(tempfile.mkdtemp(prefix="keras-makemore-worker-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
