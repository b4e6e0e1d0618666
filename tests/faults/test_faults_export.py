"""Faults around export, sampling and scoring: one clear line on stderr, exit 2, nothing saved lost."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, run_cli, start_web_server

from keras_makemore.artifacts.reader import ExportedModel
from keras_makemore.artifacts.writer import export_run
from keras_makemore.errors import UserError

pytestmark = pytest.mark.slow  # exports and runs the CLI in subprocesses


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, trained_run):
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    export_run(run_dir, check=False)
    return run_dir


def _one_line_error(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-makemore: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _tree_digest(path) -> dict:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_saved_model_without_variables_is_refused(exported_run, tmp_path):
    export_dir = tmp_path / "export"
    shutil.copytree(exported_run / "export", export_dir)
    shutil.rmtree(export_dir / "saved_model" / "variables")
    _one_line_error(run_cli("sample", str(export_dir / "saved_model")), "variables/variables.index is missing",
                    "export the run again")
    line = _one_line_error(run_cli("sample", str(export_dir / "saved_model"), "--trust-saved-model"),
                           "not a loadable SavedModel")
    assert "export the run again" in line


def test_garbage_saved_model_pb_is_refused(exported_run, tmp_path):
    export_dir = tmp_path / "export"
    shutil.copytree(exported_run / "export", export_dir)
    (export_dir / "saved_model" / "saved_model.pb").write_bytes(b"\x08garbage\xff" * 50)
    _one_line_error(run_cli("sample", str(export_dir / "saved_model")), "saved_model.pb changed")
    _one_line_error(run_cli("score", str(export_dir / "saved_model"), "emma", "--trust-saved-model"),
                    "not a loadable SavedModel")
    alone = tmp_path / "alone"
    shutil.copytree(export_dir / "saved_model", alone)
    _one_line_error(run_cli("sample", str(alone)), "no export.json", "trust")


class _Crafted(tf.Module):
    """A SavedModel with the export signatures whose `decode` writes a file: what a hostile download could do."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="tokens")])
    def decode(self, tokens):
        tf.io.write_file(self.marker, "pwned")
        return {"code_points": tokens, "vocabulary": tf.constant([0, 97], tf.int32),
                "block_size": tf.constant(3), "max_length": tf.constant(8)}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32, name="context")])
    def next_token(self, context):
        logits = tf.zeros([tf.shape(context)[0], 2])
        return {"logits": logits, "probabilities": logits}


def test_a_foreign_saved_model_never_runs_without_the_flag(tmp_path):
    marker = tmp_path / "written_by_the_saved_model"
    module = _Crafted(str(marker))
    crafted = tmp_path / "export" / "saved_model"
    tf.saved_model.save(module, str(crafted), signatures={
        "decode": module.decode, "next_token": module.next_token, "generate": module.next_token,
        "score": module.next_token})
    # A manifest of another SavedModel's files does not make it trusted either.
    (tmp_path / "export" / "export.json").write_text(json.dumps(
        {"saved_model": "saved_model", "saved_model_sha256": {"saved_model.pb": "0" * 64}}))
    for command in (("sample", str(crafted)), ("score", str(crafted), "a")):
        _one_line_error(run_cli(*command), "trust")
        assert not marker.exists()
    with pytest.raises(UserError, match="trust_saved_model") as e:
        ExportedModel(crafted)
    assert e.value.argument == "trust_saved_model" and not marker.exists()
    run_cli("sample", str(crafted), "--trust-saved-model")
    assert marker.read_text() == "pwned"  # the flag does open it: the test's SavedModel really would have run


def test_export_refuses_a_plain_file_where_the_export_folder_goes(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    (run_dir / "export").write_text("my notes")
    _one_line_error(run_cli("export", str(run_dir)), "is a file", "move it away")
    assert (run_dir / "export").read_text() == "my notes"


def test_two_exports_of_one_run_at_once_both_succeed(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-m", "keras_makemore", "export", str(run_dir), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for extra in ((), ("--quantize", "dynamic"))]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
    names = sorted(p.name for p in (run_dir / "export").iterdir())
    assert names == ["export.json", "model.tflite", "model_dynamic.tflite", "saved_model"], names
    manifest = json.loads((run_dir / "export" / "export.json").read_text())
    assert set(manifest["litert"]) == {"model.tflite", "model_dynamic.tflite"}
    words = ExportedModel(run_dir / "export" / "saved_model").generate(seed=3, num_words=5)
    assert words == ExportedModel(run_dir / "export" / "model.tflite").generate(seed=3, num_words=5)


@pytest.mark.parametrize("flags, needle", [  # the Python checks behind them: tests/test_sampling.py
    (("--seed", str(2**31)), "seed"), (("--temperature", "inf"), "temperature"),
    (("--temperature", "nan"), "temperature"), (("--top-p", "1.5"), "top"),
    (("--max-length", "999"), "max"), (("--json", "-n", "100000000"), "json"),
])
def test_nonsense_sampling_values_are_refused(exported_run, flags, needle):
    _one_line_error(run_cli("sample", str(exported_run / "export" / "model.tflite"), *flags), needle)


def test_negative_seeds_are_seeds(exported_run):
    model = str(exported_run / "export" / "model.tflite")
    first, again, other = (run_cli("sample", model, "--seed", seed, "-n", "5") for seed in ("-1", "-1", "1"))
    assert first.returncode == 0 and first.stdout == again.stdout != other.stdout


def test_a_hundred_million_words_stream(exported_run):
    """`-n 100000000` prints words as they come instead of holding them all."""
    proc = subprocess.Popen([sys.executable, "-m", "keras_makemore", "sample", str(exported_run / "export" / "model.tflite"),
                             "-n", "100000000", "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    try:
        lines = [proc.stdout.readline() for _ in range(25_000)]
    finally:
        proc.kill()
        proc.wait()
    assert all(line.endswith("\n") for line in lines)
    first = run_cli("sample", str(exported_run / "export" / "model.tflite"), "-n", "25000", "--seed", "1")
    assert "".join(lines) == first.stdout


def test_data_file_errors_name_the_line_not_the_content(exported_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("emma\nsecret-Ω-line\n", encoding="utf-8")
    line = _one_line_error(run_cli("score", str(exported_run), "--file", str(words)), "line 2", str(words))
    assert "secret" not in line
    binary = tmp_path / "banned.bin"
    binary.write_bytes(b"secret\x00\xff")
    line = _one_line_error(run_cli("sample", str(exported_run), "--exclude", str(binary)), str(binary))
    assert "secret" not in line


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.skipif(not _is_root() or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_export_on_a_full_disk_is_one_line_and_keeps_the_earlier_export(trained_run, exported_run, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    run_bytes = sum(p.stat().st_size for p in trained_run.run_dir.rglob("*") if p.is_file())
    export_bytes = sum(p.stat().st_size for p in (exported_run / "export").rglob("*") if p.is_file())
    size_kb = (run_bytes + export_bytes * 3 // 2) // 1024  # room for one export, not two
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)], check=True)
    try:
        run_dir = mount / "run"
        shutil.copytree(trained_run.run_dir, run_dir)
        assert run_cli("export", str(run_dir), "--no-check").returncode == 0
        before = _tree_digest(run_dir)
        _one_line_error(run_cli("export", str(run_dir), "--quantize", "dynamic"), "no space left", "free some space")
        assert _tree_digest(run_dir) == before  # the run and the earlier export are intact, no partial files
        assert ExportedModel(run_dir / "export" / "saved_model").generate(seed=1, num_words=3)
        shutil.rmtree(run_dir / "export")
        (mount / "filler").write_bytes(b"\0" * (size_kb * 1024 - run_bytes - 60_000))
        _one_line_error(run_cli("export", str(run_dir), "--no-check"), "no space left")
        assert not (run_dir / "export").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# Untrusted .tflite metadata, odd files in a SavedModel, memory from input, pipes, serve.py.

def _patched_tflite(exported_run, tmp_path, replace) -> str:
    """A copy of the run's .tflite file whose vocabulary table (marker and code points, int32) is `replace`d."""
    from keras_makemore.training.run import Run

    vocab = Run.load(exported_run).vocab
    table = [0] + [ord(c) for c in vocab.chars]
    data = (exported_run / "export" / "model.tflite").read_bytes()
    old = np.array(table, np.int32).tobytes()
    assert data.count(old) >= 1  # the table of each decode signature
    patched = tmp_path / "patched.tflite"
    patched.write_bytes(data.replace(old, np.array(replace(table), np.int32).tobytes()))
    return str(patched)


VOCAB_PATCHES = {
    "negative code point": (lambda t: t[:1] + [-5] + t[2:], "holds -5, which is not a character's code point"),
    "beyond Unicode": (lambda t: t[:1] + [0x110000] + t[2:], "holds 1114112, which is not a character's code point"),
    "surrogate": (lambda t: t[:-1] + [0xD800], "holds 55296, which is not a character's code point"),
    "duplicates": (lambda t: t[:1] + [t[1]] * (len(t) - 1), "code points must be distinct and in increasing order"),
    "marker moved": (lambda t: [97] + t[1:], "token 0 must be the end marker, code point 0, got 97"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", VOCAB_PATCHES)
def test_a_tflite_file_with_a_damaged_vocabulary_is_refused(exported_run, tmp_path, case):
    replace, needle = VOCAB_PATCHES[case]
    model = _patched_tflite(exported_run, tmp_path, replace)
    for command in (("sample", model, "-n", "3"), ("score", model, "emma")):
        line = _one_line_error(run_cli(*command), needle, "is damaged or not from `keras-makemore export`")
        assert line.endswith("export the run again, or use a file you trust")
    done = subprocess.run([sys.executable, str(ROOT / "export" / "sample_tflite.py"), model, "-n", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(  # after LiteRT's own INFO line
        f"sample_tflite: error: cannot sample from {model}: its vocabulary is damaged (code points must be 0, then "
        "distinct characters in order)")


@pytest.mark.parametrize("meta, needle", [
    ({"vocabulary": [0], "block_size": 3, "max_length": 32}, "must list 2 to 1,048,576 code points, got shape (1,)"),
    ({"vocabulary": [0, 97], "block_size": 3, "max_length": 2**31 - 1}, "max_length must be a whole number from 1 "
                                                                        "to 4,096, got 2147483647"),
    ({"vocabulary": [0, 97], "block_size": 3, "max_length": 0}, "max_length must be a whole number from 1"),
    ({"vocabulary": [0, 97], "block_size": 5000, "max_length": 32}, "block_size must be a whole number from 1 to 1,024"),
    ({"vocabulary": [0.0, 97.5], "block_size": 3, "max_length": 32}, "must list 2 to 1,048,576 code points"),
])
def test_decode_metadata_is_bounded(meta, needle):
    from keras_makemore.artifacts.reader import check_decode_metadata

    meta = {k: np.asarray(v, np.float32 if isinstance(v, list) and isinstance(v[0], float) else np.int32)
            for k, v in meta.items()}
    with pytest.raises(UserError, match="is damaged or not from") as raised:
        check_decode_metadata(meta, "m.tflite")
    assert needle in str(raised.value)
    sys.path.insert(0, str(ROOT / "export"))
    try:
        import sample_tflite
    finally:
        sys.path.pop(0)
    if "block_size" not in needle:  # the script needs no block size
        with pytest.raises(ValueError):
            sample_tflite.check_metadata(meta)


def test_decode_metadata_of_a_real_export_passes(exported_run):
    from keras_makemore.training.run import Run

    exported = ExportedModel(exported_run / "export" / "model.tflite")
    run = Run.load(exported_run)
    assert (exported.vocab, exported.block_size, exported.max_length) == (run.vocab, run.config.block_size,
                                                                        run.max_length)


def _saved_model_copy(exported_run, tmp_path):
    export_dir = tmp_path / "export"
    shutil.copytree(exported_run / "export", export_dir)
    return export_dir / "saved_model"


@pytest.mark.parametrize("plant", ["symlinked file", "symlinked directory", "fifo"])
def test_the_saved_model_check_refuses_links_and_special_files(exported_run, tmp_path, plant):
    saved_model = _saved_model_copy(exported_run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    target = saved_model / "assets" / "planted"
    target.parent.mkdir(exist_ok=True)
    if plant == "symlinked file":
        target.symlink_to(outside / "secret")
    elif plant == "symlinked directory":
        target.symlink_to(outside, target_is_directory=True)
    else:
        os.mkfifo(target)
    with pytest.raises(UserError) as raised:
        ExportedModel(saved_model)  # a FIFO would block a reader forever: this returns
    kind = "not a plain file" if plant == "fifo" else "a symbolic link"
    assert f"{target} in the SavedModel is {kind}" in str(raised.value)


def test_the_saved_model_digest_is_read_in_blocks(exported_run, tmp_path):
    from keras_makemore.artifacts.reader import saved_model_digests

    saved_model = _saved_model_copy(exported_run, tmp_path)
    big = saved_model / "assets" / "big.bin"
    big.parent.mkdir(exist_ok=True)
    with open(big, "wb") as f:
        f.truncate(3 * (1 << 20) + 5)  # larger than a block, sparse
    digests = saved_model_digests(saved_model)
    assert digests["assets/big.bin"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert digests == _tree_digest(saved_model)


@pytest.mark.slow
def test_score_file_with_a_very_long_line(exported_run, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("emma\n" * 4095 + "a" * 10_000 + "\nava\n")
    for model in (str(exported_run), str(exported_run / "export" / "model.tflite")):
        line = _one_line_error(run_cli("score", model, "--file", str(words)), "word 4096 has 10,000 characters")
        assert "a" * 50 not in line  # the line itself is never echoed


def test_scoring_is_chunked_by_characters_and_agrees_with_scoring_one_by_one(trained_run):
    from keras_makemore.sampling import scoring

    words = ["emma"] * 300 + ["a" * 4000] + ["ava"] * 50
    chunks = [words[start:stop] for start, stop in scoring._chunks_by_tokens(words)]
    assert sum(chunks, []) == words
    assert all(len(c) * (max(map(len, c)) + 1) <= scoring._CHUNK_TOKENS for c in chunks)
    together = scoring.score_words(trained_run.model, trained_run.corpus.vocab, ["emma", "a" * 4000, "ava"])
    alone = [scoring.score_words(trained_run.model, trained_run.corpus.vocab, [w])[0]
             for w in ["emma", "a" * 4000, "ava"]]
    assert [s.word for s in together] == [s.word for s in alone]
    np.testing.assert_allclose([s.log_prob for s in together], [s.log_prob for s in alone], rtol=1e-5)
    with pytest.raises(UserError, match="word 2 has 4,097 characters, more than the 4,096 a model scores"):
        scoring.score_words(trained_run.model, trained_run.corpus.vocab, ["emma", "a" * 4097])


def _head(command: list[str], read: int | None = None) -> subprocess.CompletedProcess:
    """Run `command | head`: read its first 3 lines (or `read` bytes), close the pipe, wait for it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if read is None:
        got = [proc.stdout.readline() for _ in range(3)]
    else:
        got = [proc.stdout.read(read)]
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert all(got), got
    return subprocess.CompletedProcess(command, proc.returncode, b"".join(got), stderr)


@pytest.mark.slow
def test_a_reader_that_goes_away_stops_the_output_quietly(exported_run, tmp_path):
    cli = [sys.executable, "-m", "keras_makemore"]
    tflite = str(exported_run / "export" / "model.tflite")
    words = tmp_path / "words.txt"
    words.write_text("emma\nava\n" * 50_000)
    for command, read in [
        (cli + ["sample", str(exported_run), "-n", "100000", "--seed", "0"], None),
        (cli + ["sample", tflite, "-n", "100000", "--seed", "0"], None),
        (cli + ["sample", str(exported_run), "-n", "20000", "--seed", "0", "--json"], 20),
        (cli + ["score", str(exported_run), "--file", str(words)], None),
        (cli + ["score", tflite, "--file", str(words), "--json"], 20),
        ([sys.executable, str(ROOT / "export" / "sample_tflite.py"), tflite, "-n", "100000", "--seed", "0"], None),
    ]:
        done = _head(command, read)
        stderr = done.stderr.replace("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", "")  # LiteRT's
        assert done.returncode == 0 and stderr == "", (command, done.returncode, done.stderr[-2000:])


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_serve_serves_the_page_and_the_model_and_nothing_else(exported_run, tmp_path):
    tflite = exported_run / "export" / "model.tflite"
    serve, server = start_web_server(tflite)
    port = server.server_address[1]
    modules = serve.PAGE_DIR / "node_modules"
    core = modules / "@litertjs" / "core"
    created = next((p for p in (modules, modules / "@litertjs", core) if not p.exists()), None)
    core.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    link, other = core / "escape.txt", modules / "other-package.js"
    link.symlink_to(secret)
    other.write_text("x")
    try:
        assert _get(port, "/")[0] == 200 and b"makemore" in _get(port, "/")[1]
        assert _get(port, "/index.html", f"localhost:{port}")[0] == 200
        assert _get(port, "/page.js")[0] == 200
        assert _get(port, "/model.tflite") == (200, tflite.read_bytes())
        # Host headers of other names: a DNS-rebinding page on another site
        assert _get(port, "/model.tflite", "evil.example")[0] == 421
        assert _get(port, "/", f"evil.example:{port}")[0] == 421
        # the page folder's other files, its directories, and symbolic links out of it
        assert _get(port, "/serve.py")[0] == 404
        assert _get(port, "/package.json")[0] == 404
        assert _get(port, "/../../../etc/passwd")[0] == 404
        assert _get(port, "/node_modules/@litertjs/core/escape.txt")[0] == 404
        assert _get(port, "/node_modules/other-package.js")[0] == 404
        status, body = _get(port, "/node_modules/@litertjs/core/")
        assert status == 404 and b"escape.txt" not in body
        assert _get(port, "/node_modules/")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
        link.unlink()
        other.unlink()
        if created is not None:
            shutil.rmtree(created)


def test_tflite_scoring_is_batched_by_memory_and_scores_the_same(tmp_path, words_path, monkeypatch):
    """A Transformer's .tflite scored 4,096 words a call (6.8 GB resident for 3,000 names, against 2.1 GB from the
    run directory): its calls now read at most SCORE_CONTEXT_TOKENS tokens of context, with the same scores."""
    from keras_makemore.artifacts import reader
    from keras_makemore.data.reading import read_words
    from keras_makemore.training.config import TrainConfig
    from keras_makemore.training.recipe import train

    run_dir = tmp_path / "run"
    train(TrainConfig.from_preset("transformer", data=str(words_path), steps=20, eval_every=20), run_dir,
          verbose=0, num_samples=0)
    export_run(run_dir, check=False)
    model = ExportedModel(run_dir / "export" / "model.tflite")
    words = read_words(words_path) * 8
    windows = model.max_length + 1
    assert model.score_batch < reader.SCORE_BATCH
    assert model.score_batch * windows * model.block_size <= reader.SCORE_CONTEXT_TOKENS

    calls = []
    score = model._signatures["score"]
    model._signatures["score"] = lambda words: calls.append(words.shape) or score(words=words)
    batched = model.score(words)
    assert len(calls) == -(-len(words) // model.score_batch)
    assert max(rows for rows, _ in calls) * windows * model.block_size <= reader.SCORE_CONTEXT_TOKENS
    monkeypatch.setattr(ExportedModel, "score_batch", reader.SCORE_BATCH)  # as before: 4,096 words a call
    whole = model.score(words)
    for key in ("log_prob", "nll"):
        np.testing.assert_allclose(batched[key], whole[key], rtol=1e-6)


def test_tflite_score_batches_shrink_with_the_vocabulary():
    model = ExportedModel.__new__(ExportedModel)
    from keras_makemore.data.vocabulary import MAX_LOGITS_PER_CALL, Vocabulary

    model.block_size, model.max_length = 3, 32
    model.vocab = Vocabulary("abc")
    assert model.score_batch == 2_647  # a window model's: bounded by its contexts
    model.vocab = Vocabulary(map(chr, range(0x4E00, 0x4E00 + 70_000)))
    assert 1 <= model.score_batch * 33 * 70_001 <= MAX_LOGITS_PER_CALL
