"""Examples/s of `train` on names.txt with 1 worker, 2 workers (MultiWorkerMirroredStrategy on
127.0.0.1) and MirroredStrategy on 2 logical CPUs, side by side.

    .venv/bin/python benchmarks/distribute.py [--steps 2000]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from keras_makemore.data.reading import load_names

NAMES = load_names()
MIRRORED = ("import sys, runpy, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2); "
            "sys.argv = ['keras_makemore', *sys.argv[1:]]; runpy.run_module('keras_makemore', run_name='__main__')")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(prefix, out, args, workers=1):
    flags = ["train", "--data", str(NAMES), "--quiet", "--samples", "0", "--steps", str(args.steps),
             "--eval-every", str(args.steps), "--batch-size", str(args.batch_size), "--out"]
    cluster = [f"127.0.0.1:{_port()}" for _ in range(workers)]
    procs = []
    for i in range(workers):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if workers > 1:
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen([*prefix, *flags, out, *(["--strategy", "multiworker"] if workers > 1 else [])],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=1200)
        if p.returncode:
            sys.exit(err[-2000:])
    history = json.loads((Path(out) / "history.json").read_text())
    return args.steps * args.batch_size / history["train_seconds_last_session"], history["val_loss"][-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    python = [sys.executable, "-m", "keras_makemore"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("1 worker (default strategy, XLA)", *_train(python, f"{tmp}/one", args)),
                ("1 worker, --strategy mirrored on 2 logical CPUs",
                 *_train([sys.executable, "-c", MIRRORED], f"{tmp}/mirrored", args)),
                ("2 workers on 127.0.0.1 (multiworker)", *_train(python, f"{tmp}/two", args, workers=2))]
    base = rows[0][1]
    print(f"{args.steps} steps of global batch {args.batch_size} on names.txt (fit time, excluding start-up)")
    print(f"{'setup':50s} {'examples/s':>11s} {'ratio':>6s} {'val loss':>9s}")
    for name, speed, val in rows:
        print(f"{name:50s} {speed:11,.0f} {speed / base:6.2f} {val:9.4f}")


if __name__ == "__main__":
    main()
