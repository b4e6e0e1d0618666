"""Silence native libraries that write to stderr while they load."""

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block.

    TensorFlow's runtime prints CUDA probes while it loads, and LiteRT announces
    its XNNPACK delegate at the first invoke, both from C++, before or beside
    any Python logging setting; only swapping the descriptor hides them.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
