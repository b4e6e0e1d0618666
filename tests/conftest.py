import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
collect_ignore_glob = ["fixtures/*"]  # data, and the script that made the legacy runs (with the modules of its day)


@pytest.fixture(scope="session")
def names_path() -> Path:
    """makemore's names.txt, as the package ships it."""
    from keras_makemore.data.reading import load_names

    return load_names()


@pytest.fixture(scope="session")
def words_path() -> Path:
    return FIXTURES / "words.txt"


@pytest.fixture(scope="session")
def unicode_path() -> Path:
    return FIXTURES / "unicode.txt"


@pytest.fixture(scope="session")
def small_config(words_path):
    from keras_makemore.training.config import TrainConfig

    return TrainConfig(data=str(words_path), block_size=3, embed_dim=4, hidden_units=32,
                       batch_size=16, steps=600, eval_every=300, optimizer="adam", lr=0.01, seed=7)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_config):
    """One short real training run, shared by the tests that only read it."""
    from keras_makemore.training.recipe import train

    run_dir = tmp_path_factory.mktemp("run") / "run"
    result = train(small_config, run_dir, verbose=0)
    return result


def run_cli(*args: str, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run `python -m keras_makemore ARGS` in a subprocess and capture its output."""
    full_env = dict(os.environ)
    full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow by itself
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "keras_makemore", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def mounted_tmpfs(tmp_path: Path, size: str):
    """Mount a tmpfs of `size` (e.g. "1m") in `tmp_path`, yield its path, unmount it; skip where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill_disk(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` until at most `leave` bytes are free; return the filler file."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        while True:
            st = os.statvfs(disk)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(b"\0" * min(65536, max(4096, free - leave)))
            except OSError:
                break
    return filler


def assert_readable_png(path, min_size=(600, 400)):
    """A real PNG of a sensible size with a drawing in it, not a blank canvas."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import numpy as np
    from PIL import Image

    image = Image.open(path)
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # text, markers and lines on a white background
    assert (pixels < 128).mean() > 0.005
    return image.text


WEB = ROOT / "export" / "web"
SAMPLER = ROOT / "export" / "sample_tflite.py"
REQUIRE_WEB = "KERAS_MAKEMORE_REQUIRE_WEB"


def chromium_path() -> str | None:
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path, once node, chromium and export/web's node modules are all there."""
    missing = [what for what, there in (
        ("node", shutil.which("node")),
        ("chromium (apt-get install chromium, or set CHROMIUM)", chromium_path()),
        ("export/web/node_modules (run `npm ci` in export/web)",
         all((WEB / "node_modules" / p).is_dir() for p in ("@litertjs/core", "playwright-core"))),
    ) if not there]
    if missing:
        reason = f"the web page tests need {', '.join(missing)}"
        if os.environ.get(REQUIRE_WEB) == "1":
            pytest.fail(f"{REQUIRE_WEB}=1 but {reason}")
        pytest.skip(reason)
    return chromium_path()


def browse(chromium: str, url: str, *args: str) -> dict:
    result = subprocess.run(["node", str(WEB / "browse.mjs"), url, *args], capture_output=True, text=True,
                            timeout=180, env={**os.environ, "CHROMIUM": chromium})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_web_server(model):
    """export/web's serve.py serving the page and `model` from 127.0.0.1 on a free port: `(serve module, server)`."""
    spec = importlib.util.spec_from_file_location("serve", WEB / "serve.py")
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    server = serve.serve(str(model), port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return serve, server


@contextlib.contextmanager
def web_page(chromium: str, model):
    """`show(*args, **query)`: what the page shows at /?QUERY in Chromium (`args` go to browse.mjs), `model` served."""
    _, server = start_web_server(model)
    root = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield lambda *args, **query: browse(chromium, f"{root}?{urlencode(query)}", *args)
    finally:
        server.shutdown()
        server.server_close()
