"""What `vs_pytorch.py` and `vs_makemore.py` share: running a side in its own process, and `train` with a probe."""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict:
    """This checkout's keras_makemore first on the path, TensorFlow's C++ logs off."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")


def timed_run(cmd: list[str]) -> dict:
    """Run `cmd` in the repository root to its end: its wall and CPU (user + system) seconds and its stdout.

    Raises `RuntimeError` with the end of its stderr if it fails.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": proc.stdout}


def load_warning(load_average: tuple[float, float, float]) -> None:
    """Say so, above the tables, when the machine was busy before the runs began (a 1-minute load of 0.5 or more).

    On this 2-core machine at load 3-5, torch's two threads ran makemore.py's Transformer at 0.5-5 steps/s
    (64 on the idle machine, 2026-12-01): a busy core stalls every multi-threaded op.
    """
    if load_average[0] >= 0.5:
        print(f"**Not an idle machine: load average {load_average[0]:.2f} when the runs began; the figures below "
              "say more about the load than about either side.**\n")


def json_lines(stdout: str) -> list[dict]:
    """The lines of `stdout` that are JSON objects, in order."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def display(cmd: list[str]) -> str:
    """`cmd` as a reader would type it: `python` for this interpreter."""
    return " ".join("python" if a == sys.executable else a for a in cmd)


def train_with_probe(argv: list[str], probe) -> None:
    """Run `keras-makemore` (`argv`, e.g. `["train", ...]`) in this process, `probe` added to the callbacks of
    the `engine.fit` call `train` makes. Raises `RuntimeError` if the command fails."""
    from keras_makemore import cli, engine

    fit = engine.fit
    engine.fit = lambda model, dataset, **kw: fit(model, dataset, **dict(kw, callbacks=[*kw["callbacks"], probe]))
    try:
        code = cli.main(argv)
    finally:
        engine.fit = fit
    if code:
        raise RuntimeError(f"keras-makemore {' '.join(argv)} failed with exit code {code}")
