"""TensorFlow's intra-op threads for a training run: one for a step too small to share between cores.

A step of the lecture's network at batch 32 is about 0.4M multiply-adds forward: splitting each of its
small matrix products over two cores costs more in hand-offs than it saves, and one thread runs it faster.
Bigger steps gain from every core. `benchmarks/threads.py` measures each preset both ways.
"""

import tensorflow as tf

from keras_makemore.errors import UserError
from keras_makemore.models import get_model_type
from keras_makemore.models.base import WORD
from keras_makemore.training.config import TrainConfig

# Multiply-adds of one forward pass of a minibatch (`step_size`) below which `threads=None` takes one thread.
# `python benchmarks/threads.py --tries 2` on 2 cores, idle: one thread ran 1.56x the steps/s of the default
# for the lecture recipe (0.4M), 1.43x for bigram (0.09M), 1.22x for the lecture preset (1.5M); 0.98x for
# `quick` (9.9M) and 0.64x for `mlp-best` (56M). Between 9.9M and 13M the model decides (wavenet and bow
# 1.5x, rnn 0.9x), so the rule stops well below that.
ONE_THREAD_BELOW = 4_000_000


def step_size(config: TrainConfig, vocab_size: int, block_size: int) -> int:
    """Multiply-adds of one forward pass of a minibatch, roughly: parameters x examples x positions.

    A window model predicts one character per example; a word model (`context == WORD`) predicts
    every position of its `block_size`.
    """
    model_type = get_model_type(config.model)
    positions = block_size if model_type.context == WORD else 1
    return model_type.count_parameters(config, vocab_size, block_size) * config.batch_size * positions


def auto_intra_op_threads(config: TrainConfig, vocab_size: int, block_size: int) -> int:
    """The choice of `threads=None` for one replica: one thread for a step under `ONE_THREAD_BELOW`
    multiply-adds, else 0 (TensorFlow's default, one per core)."""
    return 1 if step_size(config, vocab_size, block_size) < ONE_THREAD_BELOW else 0


def set_intra_op_threads(threads: int, explicit: bool = True) -> int:
    """Set TensorFlow's intra-op threads to `threads` (0: its default), if its runtime has not started;
    return the threads the process runs with.

    Once it has (the process already ran TensorFlow work), the setting is fixed: an `explicit` request
    for another number is a `UserError` naming `threads`; otherwise it is left as it is.
    """
    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        if explicit:
            current = tf.config.threading.get_intra_op_parallelism_threads()
            raise UserError(f"threads {threads} can only be set before TensorFlow starts, and this process "
                            f"already runs it with {current or 'its default'} threads: train in a new process, "
                            "or leave threads unset", argument="threads") from None
    return tf.config.threading.get_intra_op_parallelism_threads()
