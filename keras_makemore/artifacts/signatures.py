"""The signatures of the exported artifacts: what each takes and gives, and the function behind it.

Both artifacts carry the signatures of `SIGNATURE_TABLE` (inputs and outputs
int32 or float32 only, which is all LiteRT.js reads): `next_token`,
`generate`, `score`, `decode`, and `generate_fixed`, `score_fixed` and
`decode_fixed`, the same with `FIXED_BATCH` words per call and every shape
fixed, for LiteRT.js, which allocates from the signature's shapes and cannot
resize; `initial_state` and `decode_step`, the model fed one token at a time
with its state (`models.keras_model.decoder`), for apps that drive their own
loop, and `decode_step_one`, the same for one word with every shape fixed.
`signature_table()` lists their inputs and outputs (the table of
`export/README.md`). The vocabulary travels inside the artifact (`decode`):
the file alone is enough to sample. Adding a signature is adding an entry to
`SIGNATURE_TABLE`.
"""

import dataclasses
from typing import Callable, Iterable, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_makemore.data.vocabulary import MARKER_ID, Vocabulary
from keras_makemore.models.keras_model import Decoder, decoder, is_word_model, model_shape, serving_logits
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.sampling.graph import generate_tokens
from keras_makemore.sampling.scoring import score_tokens

FIXED_BATCH = 100  # words per call of the *_fixed signatures


class Serving(NamedTuple):
    """What a signature's function is built from: the model's forward pass and the artifact's sizes (`serving_of`)."""

    logits_fn: Callable[[tf.Tensor], tf.Tensor]
    block_size: int
    max_length: int
    code_points: np.ndarray  # the code point of each token id, 0 for the marker
    decoder: Decoder  # the model fed one token at a time, for the decode_step signature
    generate_decoder: Decoder | None  # the compact one `generate` carries, for a word model
    state_spec: tf.TensorSpec  # the decoder's state as one tensor `[None, ...]` (`state_spec`)
    state_parts: int  # the tensors of the decoder's state, stacked on axis 1 in `state`


class Calibration(NamedTuple):
    """int8 calibration inputs: batches of training contexts, sampling controls, and words the model sampled."""

    contexts: list[np.ndarray]
    controls: list[dict[str, np.ndarray]]
    words: list[np.ndarray]  # [FIXED_BATCH, max_length] token ids per entry of `controls`
    steps: list[dict[str, np.ndarray]]  # decode_step inputs along words the model sampled


@dataclasses.dataclass(frozen=True)
class Signature:
    """One signature of the exported artifacts.

    Args:
        name: the signature's key in both artifacts.
        function: `Serving -> function` of the inputs, returning a dict of outputs.
        inputs: `(block_size, max_length) -> [tf.TensorSpec]`, the function's inputs in order.
        calibration: `Calibration -> iterable of input dicts` for int8 calibration.
        takes: the inputs, as `signature_table()` lists them.
        gives: the outputs, as `signature_table()` lists them.
        takes_state: the decoder's state, `state`, follows `inputs` (`Serving.state_spec`).
        one_word: that state is one word's, `[1, ...]`.
    """

    name: str
    function: Callable[[Serving], Callable]
    inputs: Callable[[int, int], list]
    calibration: Callable[[Calibration], Iterable[dict]]
    takes: str
    gives: str
    takes_state: bool = False
    one_word: bool = False

    def input_specs(self, serving: Serving) -> list[tf.TensorSpec]:
        """The function's inputs for `serving`'s artifact, the state last where it takes one."""
        specs = self.inputs(serving.block_size, serving.max_length)
        if not self.takes_state:
            return specs
        state = serving.state_spec
        return [*specs, tf.TensorSpec([1, *state.shape[1:]], state.dtype, name="state") if self.one_word else state]


def _scalar(name: str) -> tf.TensorSpec:
    return tf.TensorSpec([], tf.int32, name=name)


def _next_token(serving: Serving) -> Callable:
    def next_token(context):
        logits = serving.logits_fn(context)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}
    return next_token


def _generate(serving: Serving) -> Callable:
    def generate(seed, num_words, first_row, *controls):
        tokens = generate_tokens(serving.logits_fn, seed, first_row, num_words, block_size=serving.block_size,
                                 decoder=serving.generate_decoder, few_words_decoder=serving.decoder,
                                 **SamplingControls.by_name(controls))
        return {"tokens": _bindable(tokens)}
    return generate


def _generate_fixed(serving: Serving) -> Callable:
    def generate_fixed(seed, first_row, *controls):
        # A constant num_words makes TF 2.21's int8 calibrator crash (segfault) in
        # the loop; one computed from an input does not, and the reshape fixes the shape.
        num_words = FIXED_BATCH + 0 * first_row
        tokens = generate_tokens(serving.logits_fn, seed, first_row, num_words, block_size=serving.block_size,
                                 decoder=serving.generate_decoder, few_words_decoder=serving.decoder,
                                 **SamplingControls.by_name(controls))
        return {"tokens": _bindable(tf.reshape(tokens, [FIXED_BATCH, serving.max_length]))}
    return generate_fixed


def _score(serving: Serving) -> Callable:
    return lambda words: score_tokens(serving.logits_fn, serving.block_size, words)


def _decode(serving: Serving) -> Callable:
    def decode(tokens):
        table = tf.constant(serving.code_points)
        return {"code_points": tf.gather(table, tokens), "vocabulary": table,
                "block_size": tf.constant(serving.block_size, tf.int32),
                "max_length": tf.constant(serving.max_length, tf.int32)}
    return decode


def _initial_state(serving: Serving) -> Callable:
    def initial_state(num_words):
        state = _packed(serving.decoder.initial_state(num_words))
        # Through one real op (a no-op here): LiteRT's CompiledModel cannot bind an output that a FILL or a TILE
        # of a computed shape gives straight (ai-edge-litert 2.3).
        return {"state": tf.maximum(state, state.dtype.min)}
    return initial_state


def _decode_step(serving: Serving) -> Callable:
    def decode_step(token, position, state):
        parts = (state,) if serving.state_parts == 1 else tf.unstack(state, serving.state_parts, axis=1)
        logits, parts = serving.decoder.step(token, position, tuple(parts))
        return {"logits": logits, "state": _packed(parts)}
    return decode_step


def _decode_step_one(serving: Serving) -> Callable:
    step = _decode_step(serving)

    def decode_step_one(token, position, state):
        # At the start marker, the state before it: an app passes zeros and needs no initial_state.
        start = _packed(serving.decoder.initial_state(1))
        return step(token, position, tf.where(tf.equal(position, 0), start, state))
    return decode_step_one


def _packed(parts) -> tf.Tensor:
    """A decoder's state as the one tensor of the signatures: its only part, or its parts stacked on axis 1."""
    return parts[0] if len(parts) == 1 else tf.stack(parts, axis=1)


def state_spec(model: keras.Model) -> tuple[tf.TensorSpec, int]:
    """The spec `[None, ...]` of `model`'s decoder state as the signatures take it (`state`), and its parts."""
    parts = decoder(model).initial_state(1)
    packed = _packed(parts)
    return tf.TensorSpec([None, *packed.shape[1:]], packed.dtype, name="state"), len(parts)


def serving_of(model: keras.Model, vocab: Vocabulary, max_length: int, carry_state: bool = True) -> Serving:
    """What the signatures of `model`'s artifacts are built from (see `write_saved_model` for the arguments)."""
    shape = model_shape(model)
    code_points = np.array([MARKER_ID] + [ord(c) for c in vocab.chars], dtype=np.int32)
    return Serving(serving_logits(model), shape["block_size"], max_length, code_points, decoder(model),
                   decoder(model, compact=True) if carry_state and is_word_model(model) else None, *state_spec(model))


# The signatures, in the order of `export.json`: adding one is adding an entry here.
SIGNATURE_TABLE = (
    Signature("next_token", _next_token, lambda block, length: [tf.TensorSpec([None, block], tf.int32, name="context")],
              lambda c: ({"context": batch} for batch in c.contexts),
              "`context` int32 `[n, block_size]` (token ids, 0 = start marker)",
              "`logits`, `probabilities` float32 `[n, V]`"),
    Signature("generate", _generate,
              lambda block, length: [_scalar("seed"), _scalar("num_words"), _scalar("first_row"),
                                     *SamplingControls.tensor_specs(length)],
              lambda c: ({"seed": np.int32(seed), "num_words": np.int32(32), "first_row": np.int32(0), **controls}
                         for seed, controls in enumerate(c.controls)),
              "`seed`, `num_words` (>= 1), `first_row` (>= 0) int32 `[]`; controls (below)",
              "`tokens` int32 `[num_words, L]`: rows `first_row...` of the seed's stream"),
    Signature("score", _score, lambda block, length: [tf.TensorSpec([None, length], tf.int32, name="words")],
              lambda c: ({"words": words[:32]} for words in c.words),
              "`words` int32 `[n, L]` (token ids, zero-padded)", "`log_prob`, `nll` float32 `[n]`"),
    # A signature without inputs would be simpler, but the int8 calibrator rejects one.
    Signature("decode", _decode, lambda block, length: [tf.TensorSpec([None, None], tf.int32, name="tokens")],
              lambda c: ({"tokens": words[:32]} for words in c.words), "`tokens` int32 `[n, m]`",
              "`code_points` int32 `[n, m]` (0 for the marker), `vocabulary` int32 `[V]`, `block_size`, "
              "`max_length` int32 `[]`"),
    Signature("generate_fixed", _generate_fixed,
              lambda block, length: [_scalar("seed"), _scalar("first_row"), *SamplingControls.tensor_specs(length)],
              lambda c: ({"seed": np.int32(seed), "first_row": np.int32(0), **controls}
                         for seed, controls in enumerate(c.controls)),
              "as `generate`, without `num_words`", "`tokens` int32 `[B, L]`"),
    Signature("score_fixed", _score,
              lambda block, length: [tf.TensorSpec([FIXED_BATCH, length], tf.int32, name="words")],
              lambda c: ({"words": words} for words in c.words), "`words` int32 `[B, L]`",
              "`log_prob`, `nll` float32 `[B]`"),
    Signature("decode_fixed", _decode,
              lambda block, length: [tf.TensorSpec([FIXED_BATCH, length], tf.int32, name="tokens")],
              lambda c: ({"tokens": words} for words in c.words), "`tokens` int32 `[B, L]`",
              "as `decode`, `code_points` `[B, L]`"),
    Signature("initial_state", _initial_state, lambda block, length: [_scalar("num_words")],
              lambda c: ({"num_words": np.int32(n)} for n in (1, 32)), "`num_words` (>= 1) int32 `[]`",
              "`state` `[num_words, ...]` (float32; int32 for a window model): the state before the start marker"),
    Signature("decode_step", _decode_step,
              lambda block, length: [tf.TensorSpec([None], tf.int32, name="token"), _scalar("position")],
              lambda c: iter(c.steps),
              "`token` int32 `[n]` at `position` int32 `[]` (0 for the start marker; below `block_size` for a "
              "word model), `state` as `initial_state` or `decode_step` gave it",
              "`logits` float32 `[n, V]` of the next token, `state` after `token`", takes_state=True),
    Signature("decode_step_one", _decode_step_one,
              lambda block, length: [tf.TensorSpec([1], tf.int32, name="token"), _scalar("position")],
              lambda c: ({**step, "token": step["token"][:1], "state": step["state"][:1]} for step in c.steps),
              "as `decode_step`, one word: `token` int32 `[1]`, `state` `[1, ...]` (at `position` 0 it is not "
              "read: pass zeros)", "as `decode_step`, `logits` `[1, V]`", takes_state=True, one_word=True),
)
SIGNATURES = tuple(signature.name for signature in SIGNATURE_TABLE)


def signature_table() -> str:
    """The signatures' inputs and outputs as a Markdown table (`L` is the artifact's `max_length`,
    `V` the vocabulary size with the marker, `B` = `FIXED_BATCH`)."""
    rows = [f"| `{s.name}` | {s.takes} | {s.gives} |" for s in SIGNATURE_TABLE]
    return "\n".join(["| signature | inputs | outputs |", "| --- | --- | --- |", *rows])


def _bindable(tokens: tf.Tensor) -> tf.Tensor:
    """`tokens` through one real op (a no-op on token ids).

    LiteRT.js cannot bind a signature output that comes straight out of a WHILE
    whose loop shapes are dynamic: it returns zeros (LiteRT.js 2.5.3, Node 20 and Chromium).
    """
    return tf.maximum(tokens, MARKER_ID)
