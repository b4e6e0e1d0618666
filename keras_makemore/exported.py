"""Load an exported model (LiteRT `.tflite` file or SavedModel) and sample from it.

Both artifacts carry the same signatures (see `keras_makemore.export`), so one
class serves both: LiteRT files run in `ai_edge_litert`'s interpreter, the
runtime phones and edge boards use; SavedModels in TensorFlow.
"""

import os
from pathlib import Path

import numpy as np

from keras_makemore._stderr import quiet_stderr
from keras_makemore.data import MARKER_ID, Vocabulary
from keras_makemore.errors import UserError


class ExportedModel:
    """A model written by `keras-makemore export`, with its vocabulary read from the artifact.

    Args:
        path: a `.tflite` file or a SavedModel directory.

    Calling the object maps int32 contexts `[batch, block_size]` to logits, so
    it can stand in for the Keras model in `sample_words`.

    Example:

    ```python
    exported = ExportedModel("runs/names/export/model.tflite")
    exported.generate(seed=0, num_words=5)            # sampled inside the graph
    sample_words(exported, exported.vocab, exported.block_size, 5, seed=0)  # sampled in numpy
    ```
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir() and (self.path / "saved_model.pb").exists():
            self._signatures = _saved_model_signatures(self.path)
        elif self.path.is_file() and self.path.suffix == ".tflite":
            self._signatures = _litert_signatures(self.path)
        else:
            raise UserError(
                f"{self.path} is not a .tflite file or a SavedModel directory: "
                "pass a run directory, or a file from `keras-makemore export`"
            )
        missing = {"next_token", "generate", "generate_with_uniforms", "decode"} - set(self._signatures)
        if missing:
            raise UserError(f"{self.path} lacks the signatures {sorted(missing)}: re-export it with `keras-makemore export`")
        with quiet_stderr():  # LiteRT announces its XNNPACK delegate on stderr at the first invoke
            meta = self._signatures["decode"](tokens=np.zeros((1, 1), np.int32))
        code_points = np.asarray(meta["vocabulary"])
        self.vocab = Vocabulary(chr(c) for c in code_points[MARKER_ID + 1:])
        self.block_size = int(meta["block_size"])
        self.max_length = int(meta["max_length"])

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        return self.next_token(contexts)["logits"]

    def next_token(self, contexts: np.ndarray) -> dict[str, np.ndarray]:
        """`{"logits", "probabilities"}`, float32 `[batch, vocab]`, for int32 contexts `[batch, block_size]`."""
        return self._signatures["next_token"](context=np.asarray(contexts, dtype=np.int32))

    def generate(self, seed: int = 0, num_words: int = 1, temperature: float = 1.0) -> list[str]:
        """`num_words` words sampled inside the graph from `seed`; one invoke."""
        _check_temperature(temperature)
        if num_words < 0:
            raise UserError(f"the number of words must be 0 or more, got {num_words}")
        if num_words == 0:
            return []  # LiteRT cannot return an empty tensor
        out = self._signatures["generate"](seed=np.int32(seed), num_words=np.int32(num_words),
                                           temperature=np.float32(temperature))
        return self._decode(out["tokens"])

    def generate_with_uniforms(self, uniforms: np.ndarray, temperature: float = 1.0) -> list[str]:
        """One word per row of float32 `uniforms` `[num_words, max_length]`, sampled inside the graph."""
        _check_temperature(temperature)
        if not len(uniforms):
            return []
        out = self._signatures["generate_with_uniforms"](
            uniforms=np.asarray(uniforms, dtype=np.float32), temperature=np.float32(temperature))
        return self._decode(out["tokens"])

    def _decode(self, tokens) -> list[str]:
        return [self.vocab.decode(row) for row in np.asarray(tokens)]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise UserError(f"temperature must be above 0, got {temperature}: try --temperature 1.0")


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

    loaded = tf.saved_model.load(str(path))

    def runner(fn, keep_alive=loaded):  # the signatures need the loaded object's variables
        return lambda **inputs: {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    return {name: runner(fn) for name, fn in loaded.signatures.items()}
