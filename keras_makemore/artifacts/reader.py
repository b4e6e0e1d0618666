"""Load an exported model (LiteRT `.tflite` file or SavedModel) and sample from it or score with it.

Both artifacts carry the same signatures (see `keras_makemore.artifacts.signatures`), so one
class serves both: LiteRT files run in `ai_edge_litert`'s interpreter, the
runtime phones and edge boards use; SavedModels in TensorFlow.

A SavedModel is a program: loading one runs its graph, which may read and
write files. So a SavedModel is opened only when the sha256 of each of its
files matches what `keras-makemore export` recorded in `export.json` beside
it, or when the caller says it trusts the files (`trust_saved_model=True`).
A `.tflite` file holds only builtin ops, which cannot reach the file system,
and needs no such check.
"""

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary, examples_per_call
from keras_makemore.errors import UserError
from keras_makemore.quiet import quiet_stderr
from keras_makemore.sampling.controls import SamplingControls, control_keywords, resolve_seed

MANIFEST_FILE = "export.json"
REQUIRED_SIGNATURES = ("next_token", "generate", "score", "decode")
SCORE_BATCH = 4096  # words per `score` call: 4,096 words of 32 characters are 135,000 contexts
# Tokens of context one `score` call reads (words x (max_length + 1) windows x block_size): LiteRT holds every
# intermediate tensor of the call. Scoring 3,000 names with the transformer preset's .tflite (block 16,
# max_length 32) peaked at 6.8 GB resident in chunks of 4,096 words, 2.8 GB in chunks of 1,024, 1.2 GB of 256,
# the scores the same (the run directory's path: 2.1 GB); this bound makes chunks of 496 words there, and
# leaves a window model's (block 3) at 2,647.
SCORE_CONTEXT_TOKENS = 2**18
MAX_LENGTH = 4096  # the longest words an artifact may declare: `export` writes at most 256
MAX_VOCABULARY = 1 << 20  # more tokens than Unicode has characters cannot be right


class ExportedModel:
    """A model written by `keras-makemore export`, with its vocabulary read from the artifact.

    Args:
        path: a `.tflite` file or a SavedModel directory.
        trust_saved_model: open a SavedModel whose files do not match the
            sha256 recorded in `export.json` beside it (one that
            keras-makemore did not write, or that changed since). Only for
            files you trust: a SavedModel runs its own graph.

    Calling the object maps int32 contexts `[batch, block_size]` to logits.
    Pass it to `sample_words` for the options of the CLI (excluded words,
    bounded tries), or to `score_words`.

    Example:

    ```python
    exported = ExportedModel("runs/names/export/model.tflite")
    exported.generate(seed=0, num_words=5, top_p=0.9)   # sampled inside the graph
    exported.score(["emma", "xqzvk"])                   # log-probabilities
    ```
    """

    def __init__(self, path: str | os.PathLike, trust_saved_model: bool = False):
        self.path = Path(path)
        if self.path.is_dir() and (self.path / "saved_model.pb").exists():
            if not trust_saved_model:
                check_saved_model_digests(self.path)
            self._signatures = _saved_model_signatures(self.path)
        elif self.path.is_file() and self.path.suffix == ".tflite":
            self._signatures = _litert_signatures(self.path)
        else:
            raise UserError(
                f"{self.path} is not a .tflite file or a SavedModel directory: "
                "pass a run directory, or a file from `keras-makemore export`"
            )
        missing = set(REQUIRED_SIGNATURES) - set(self._signatures)
        if missing:
            raise UserError(f"{self.path} lacks the signatures {sorted(missing)}: re-export it with `keras-makemore export`")
        with quiet_stderr():  # LiteRT announces its XNNPACK delegate on stderr at the first invoke
            meta = self._signatures["decode"](tokens=np.zeros((1, 1), np.int32))
        self.vocab, self.block_size, self.max_length = check_decode_metadata(meta, self.path)
        try:
            logits = self(np.zeros((1, self.block_size), np.int32))
        except Exception as e:  # the interpreter's or TensorFlow's own error: the file is inconsistent
            raise UserError(f"{self.path} is damaged: its model does not take contexts of its block_size "
                            f"{self.block_size} ({type(e).__name__}): export the run again") from None
        if np.shape(logits) != (1, self.vocab.size):
            raise UserError(f"{self.path} is damaged: its model gives {np.shape(logits)[-1]} logits per context "
                            f"but its vocabulary has {self.vocab.size} tokens: export the run again")

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        return self.next_token(contexts)["logits"]

    def next_token(self, contexts: np.ndarray) -> dict[str, np.ndarray]:
        """`{"logits", "probabilities"}`, float32 `[batch, vocab]`, for int32 contexts `[batch, block_size]`."""
        return self._signatures["next_token"](context=np.asarray(contexts, dtype=np.int32))

    @control_keywords
    def generate(self, seed: int = 0, num_words: int = 1, first_row: int = 0, **controls) -> list[str]:
        """Words `first_row .. first_row + num_words - 1` of `seed`'s stream, sampled in one invoke.

        `**controls` are the fields of `SamplingControls`; `max_length`
        defaults to the artifact's own limit.
        """
        inputs = SamplingControls(**controls).inputs(self.vocab, self.max_length)
        tokens = self.generate_tokens(resolve_seed(seed), first_row, num_words, inputs)
        return [self.vocab.decode(row) for row in tokens]

    def generate_tokens(self, seed: int, first_row: int, num_words: int, inputs: dict) -> np.ndarray:
        """The `generate` signature: int32 tokens `[num_words, max_length]` for `SamplingControls.inputs`."""
        if num_words < 0 or first_row < 0:
            raise UserError(f"num_words and first_row must be 0 or more, got {num_words} and {first_row}",
                            argument="num_words")
        if num_words == 0:
            return np.zeros((0, self.max_length), np.int32)  # LiteRT cannot return an empty tensor
        return self._signatures["generate"](seed=np.int32(seed), num_words=np.int32(num_words),
                                            first_row=np.int32(first_row), **inputs)["tokens"]

    def initial_state(self, num_words: int = 1) -> np.ndarray:
        """The `initial_state` signature: the state `[num_words, ...]` of `num_words` words before their start marker."""
        self._require("initial_state")
        return self._signatures["initial_state"](num_words=np.int32(num_words))["state"]

    def decode_step(self, token: np.ndarray, position: int, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `decode_step` signature: feed int32 tokens `[n]` at `position` (0 for the start marker); the
        next-token logits `[n, V]` and the state after them.

        Example:

        ```python
        state = exported.initial_state(1)
        logits, state = exported.decode_step(np.zeros(1, np.int32), 0, state)  # the start marker
        ```
        """
        self._require("decode_step")
        out = self._signatures["decode_step"](token=np.asarray(token, np.int32), position=np.int32(position),
                                              state=state)
        return out["logits"], out["state"]

    def _require(self, signature: str) -> None:
        if signature not in self._signatures:
            raise UserError(f"{self.path} has no {signature} signature: export the run again with this keras-makemore")

    def score(self, words: list[str]) -> dict[str, np.ndarray]:
        """The `score` signature: `{"log_prob", "nll"}`, float32 `[len(words)]`.

        `log_prob` is the natural log-probability of each word's characters and
        its end marker, `nll` the mean negative log-likelihood per token
        (`-log_prob / (len(word) + 1)`).
        """
        for i, word in enumerate(words):
            if len(word) > self.max_length:  # the word is not echoed: it may be anything from a file
                raise UserError(f"words: word {i + 1} has {len(word):,} characters, more than the "
                                f"{self.max_length} this model scores", argument="words")

        def score_chunk(start: int, stop: int) -> dict:
            ids = np.zeros((stop - start, self.max_length), np.int32)
            for i, word in enumerate(words[start:stop]):
                ids[i, :len(word)] = self.vocab.encode(word)
            return self._signatures["score"](words=ids)

        return score_in_chunks(score_chunk, fixed_chunks(len(words), self.score_batch))

    @property
    def score_batch(self) -> int:
        """Words per `score` call: `SCORE_BATCH`, or fewer so that a call reads at most `SCORE_CONTEXT_TOKENS`
        tokens of context and holds at most `MAX_LOGITS_PER_CALL` logits."""
        windows = self.max_length + 1  # each word's characters and its end, each predicted from a window
        words = max(1, min(SCORE_BATCH, SCORE_CONTEXT_TOKENS // (windows * self.block_size)))
        return max(1, examples_per_call(words * windows, self.vocab.size) // windows)


def fixed_chunks(count: int, size: int = SCORE_BATCH) -> Iterator[tuple[int, int]]:
    """`(start, stop)` of consecutive chunks of `size` of `count` words."""
    return ((start, min(start + size, count)) for start in range(0, count, size))


def score_in_chunks(score: Callable[[int, int], dict], chunks: Iterable[tuple[int, int]]) -> dict[str, np.ndarray]:
    """`{"log_prob", "nll"}` of words scored a chunk at a time: `score(start, stop)` for each of `chunks`."""
    parts = [score(start, stop) for start, stop in chunks]
    return {key: np.concatenate([np.asarray(p[key]) for p in parts]) if parts else np.zeros(0, np.float32)
            for key in ("log_prob", "nll")}


def check_decode_metadata(meta: dict, path: Path) -> tuple[Vocabulary, int, int]:
    """The vocabulary, block size and word length limit that an artifact's `decode` signature returns, checked.

    An artifact may come from anyone: its code points must be characters
    (not surrogates), in the order keras-makemore writes them (the marker,
    then strictly increasing, so no duplicates), at least one besides the
    marker; its sizes must be within the bounds `train` and `export` allow.
    """
    from keras_makemore.training.config import MAX_BLOCK_SIZE

    def damaged(problem):
        return UserError(f"{path} is damaged or not from `keras-makemore export` ({problem}): export the run again, "
                         "or use a file you trust")

    vocabulary = np.asarray(meta.get("vocabulary"))
    if vocabulary.ndim != 1 or vocabulary.dtype.kind not in "iu" or not 2 <= len(vocabulary) <= MAX_VOCABULARY:
        raise damaged(f"its vocabulary must list 2 to {MAX_VOCABULARY:,} code points, got shape {vocabulary.shape}")
    code_points = vocabulary.astype(np.int64)
    if code_points[0] != MARKER_ID:
        raise damaged(f"token {MARKER_ID} must be the end marker, code point {MARKER_ID}, got {code_points[0]}")
    chars = code_points[1:]
    bad = next((c for c in chars if not 1 <= c <= 0x10FFFF or 0xD800 <= c <= 0xDFFF), None)
    if bad is not None:
        raise damaged(f"its vocabulary holds {bad}, which is not a character's code point")
    if (np.diff(chars) <= 0).any():
        raise damaged("its vocabulary's code points must be distinct and in increasing order")
    sizes = {}
    for name, high in (("block_size", MAX_BLOCK_SIZE), ("max_length", MAX_LENGTH)):
        value = np.asarray(meta.get(name))
        if value.shape != () or value.dtype.kind not in "iu" or not 1 <= int(value) <= high:
            raise damaged(f"{name} must be a whole number from 1 to {high:,}, got {value.tolist()}")
        sizes[name] = int(value)
    return Vocabulary(chr(c) for c in chars), sizes["block_size"], sizes["max_length"]


def saved_model_digests(path: str | os.PathLike) -> dict[str, str]:
    """The sha256 of every file in the SavedModel directory `path`, by path relative to it.

    Files are read in blocks (a 2 GB file takes 1 MiB of memory). Anything
    but plain files and directories (a symbolic link, which could point
    anywhere, a FIFO, which would block, a device) is refused with a `UserError`.
    """
    path = Path(path)
    digests = {}
    for directory, subdirs, files in os.walk(path, onerror=_raise):
        for name in sorted(subdirs + files):
            entry = Path(directory, name)
            mode = entry.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
                raise UserError(f"trust_saved_model: {entry} in the SavedModel is {kind}: `keras-makemore export` "
                                "writes only plain files; export the run again", argument="trust_saved_model")
            digests[entry.relative_to(path).as_posix()] = _file_sha256(entry)
    return dict(sorted(digests.items()))


def _raise(error: OSError) -> None:
    raise error


def _file_sha256(path: Path) -> str:
    """The sha256 of plain file `path`, read in blocks; swapped for a link or a FIFO since it was listed, refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        fd = None
    if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
        if fd is not None:
            os.close(fd)
        raise UserError(f"trust_saved_model: {path} in the SavedModel is not a plain file: export the run again",
                        argument="trust_saved_model")
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_saved_model_digests(path: Path) -> None:
    """Raise unless the files of SavedModel `path` are those `export.json` beside it records."""
    trust = ("a SavedModel runs its own graph: pass trust_saved_model only if you trust these files, "
             "or sample the .tflite file or the run directory")
    try:
        manifest = json.loads((path.parent / MANIFEST_FILE).read_text(encoding="utf-8"))
        recorded = manifest["saved_model_sha256"] if manifest["saved_model"] == path.name else None
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise UserError(f"trust_saved_model: {path} has no {MANIFEST_FILE} from `keras-makemore export` beside it; "
                        + trust, argument="trust_saved_model")
    actual = saved_model_digests(path)
    problems = ([f"{name} is missing" for name in recorded if name not in actual]
                + [f"{name} changed" for name in recorded if name in actual and actual[name] != recorded[name]]
                + [f"{name} was added" for name in actual if name not in recorded])
    if problems:
        raise UserError(f"trust_saved_model: {path} is not what `keras-makemore export` wrote "
                        f"({', '.join(problems[:3])}): export the run again; " + trust,
                        argument="trust_saved_model")


def _litert_signatures(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
    except ValueError as e:
        raise UserError(f"{path} is not a valid LiteRT model ({str(e).splitlines()[0]}): export it again") from None
    return {name: _LiteRTSignature(interpreter.get_signature_runner(name)) for name in interpreter.get_signature_list()}


class _LiteRTSignature:
    """A LiteRT signature that resizes and allocates its tensors only when the input shapes change.

    `SignatureRunner.__call__` builds a shape array, resizes every input and
    asks for allocation on every call, which from Python costs more than the
    model itself on one context. Here an input of the shape the subgraph was
    last allocated for goes straight in; the interpreter rejects one of any
    other shape, and only then does the runner resize and allocate.
    """

    def __init__(self, runner):
        self._runner = runner
        self._interpreter = runner._interpreter_wrapper
        self._subgraph = runner._subgraph_index
        self._inputs = dict(runner._inputs)
        self._outputs = list(runner._outputs)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        interpreter, subgraph = self._interpreter, self._subgraph
        try:
            for name, value in inputs.items():
                interpreter.SetTensor(self._inputs[name], value, subgraph)
        except ValueError:  # another shape than allocated, or not allocated yet
            return self._runner(**inputs)
        interpreter.Invoke(subgraph)
        return {name: interpreter.GetTensor(index, subgraph) for name, index in self._outputs}


def _saved_model_signatures(path: Path) -> dict:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, DecodeError, tf.errors.OpError) as e:
        raise UserError(f"{path} is not a loadable SavedModel ({type(e).__name__}): "
                        "export the run again with `keras-makemore export RUN_DIR`") from None

    def runner(fn, keep_alive=loaded):  # the signatures need the loaded object's variables
        return lambda **inputs: {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    return {name: runner(fn) for name, fn in loaded.signatures.items()}


@dataclasses.dataclass
class OpenedModel:
    """A model to sample from or score with, and what goes with it.

    `model` is the run's Keras model or an `ExportedModel`; `run` is the run
    it belongs to (for the training words), or None for an artifact found
    outside a run's `export/` folder.
    """

    model: object
    vocab: Vocabulary
    block_size: int
    max_length: int
    run: object


def open_model(path: str | os.PathLike, trust_saved_model: bool = False) -> OpenedModel:
    """Open a run directory, a `.tflite` file or a SavedModel directory from `keras-makemore export`."""
    from keras_makemore.training.run import Run, run_of_export

    path = Path(path)
    if path.suffix == ".tflite" or (path / "saved_model.pb").exists():
        model = ExportedModel(path, trust_saved_model=trust_saved_model)
        return OpenedModel(model, model.vocab, model.block_size, model.max_length, run_of_export(path))
    run = Run.load(path)
    return OpenedModel(run.model, run.vocab, run.config.block_size, run.max_length, run)
