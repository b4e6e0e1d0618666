"""The sampling controls, checked once and turned into the int32/float32 inputs of `generate`.

Keras, the SavedModel and LiteRT files all sample through the same graph
(`keras_makemore.sampling.graph`); this module gives them the same inputs, so the
same options give the same words on every runtime. `SamplingControls` is the
one place a control is defined: its default, its check, the `generate` input
it becomes and the `sample` command's flag all come from its field.
"""

import dataclasses
import inspect
import math
import secrets
from typing import TYPE_CHECKING, Callable

import numpy as np

from keras_makemore.errors import UserError

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_makemore.data.vocabulary import Vocabulary

INT32_MAX = 2**31 - 1
# Below it float32 logits / temperature overflow (1e-50 even rounds to 0 in float32, and every word came out
# empty); at 1e-6 logits up to 1e32 stay finite, and the sampling is greedy already.
MIN_TEMPERATURE = 1e-6


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _whole(low: int) -> Callable[[object], bool]:
    return lambda value: _is_int(value) and low <= value <= INT32_MAX


def _control(default, dtype: str, valid: Callable[[object], bool], must: str, help: str, metavar: str,
             off=None, per_character: bool = False):
    """A field of `SamplingControls`.

    Args:
        default: the Python default; None means the control is off.
        dtype: the `generate` input's dtype, `"int32"` or `"float32"`.
        valid: whether a value (not None) is allowed.
        must: what a valid value is, for the error message ("a whole number of at least 1").
        help: the `sample` command's help for the flag (`--name-with-dashes`).
        metavar: the flag's placeholder.
        off: the input that turns the control off, for a default of None.
        per_character: the input is one value per character of the word
            (`[max_length]`, like `prefix`), not a scalar.
    """
    return dataclasses.field(default=default, metadata={
        "dtype": dtype, "valid": valid, "must": must, "help": help, "metavar": metavar, "off": off,
        "per_character": per_character})


@dataclasses.dataclass(frozen=True)
class SamplingControls:
    """How each character is drawn.

    The fields' order is the order of the `generate` signature's controls, a
    wire format: a new control goes at the end, with a default that keeps the
    words of today.

    Args:
        temperature: > 0 and finite; below 1 sharpens the distribution, above 1 flattens it.
        top_k: draw only among the `top_k` likeliest tokens (None: all).
        top_p: nucleus sampling: draw only among the likeliest tokens whose
            probabilities add up to `top_p` (None: all); in (0, 1].
        prefix: every word starts with these characters.
        min_length: the end marker is not drawn before this many characters.
        max_length: words are cut at this many characters, prefix included
            (None: the longest the model allows).

    Example:

    >>> SamplingControls(temperature=0.8, top_p=0.9).top_p
    0.9
    >>> SamplingControls.names()
    ('temperature', 'top_k', 'top_p', 'prefix', 'min_length', 'max_length')
    """

    temperature: float = _control(
        1.0, "float32", lambda v: _is_number(v) and MIN_TEMPERATURE <= v < math.inf,
        f"a finite number of at least {MIN_TEMPERATURE:g}: try 1.0", f"softmax temperature >= {MIN_TEMPERATURE:g}", "T")
    top_k: int | None = _control(
        None, "int32", _whole(1), "a whole number of at least 1: try 5, or leave it out",
        "sample only among the K likeliest characters", "K", off=0)
    top_p: float | None = _control(
        None, "float32", lambda v: _is_number(v) and 0 < v <= 1, "above 0 and at most 1: try 0.9, or leave it out",
        "nucleus sampling: only among the likeliest characters whose probabilities add up to P (0 < P <= 1)", "P",
        off=1.0)
    prefix: str = _control("", "int32", lambda v: isinstance(v, str), "a string", "start every word with P", "P",
                           per_character=True)
    min_length: int = _control(0, "int32", _whole(0), "a whole number of 0 or more",
                               "no word ends before N characters", "N")
    max_length: int | None = _control(None, "int32", _whole(1), "a whole number of at least 1",
                                      "cut words at N characters (default: the model's limit)", "N", off=0)

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (value is None and field.default is None) and not field.metadata["valid"](value):
                must, _, hint = field.metadata["must"].partition(": ")
                raise UserError(f"{field.name} must be {must}, got {value}" + (f": {hint}" if hint else ""),
                                argument=field.name)
        if self.max_length is not None and self.min_length > self.max_length:
            raise UserError(f"min_length {self.min_length} is above max_length {self.max_length}: "
                            "lower min_length or raise max_length", argument="min_length")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The controls, in the order of the `generate` signature's inputs."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def by_name(cls, values) -> dict:
        """`values`, one per control in the signature's order, keyed by the controls' names."""
        return dict(zip(cls.names(), values, strict=True))

    @classmethod
    def tensor_specs(cls, width: int | None) -> list["tf.TensorSpec"]:
        """The controls' `tf.TensorSpec`s, in order: scalars, and `[width]` for a per-character control."""
        import tensorflow as tf

        return [tf.TensorSpec([width] if field.metadata["per_character"] else [], field.metadata["dtype"],
                              name=field.name) for field in dataclasses.fields(cls)]

    def inputs(self, vocab: "Vocabulary", width: int) -> dict[str, np.ndarray]:
        """The controls as `generate`'s inputs, for words of at most `width` characters.

        Returns:
            One int32 or float32 numpy value per control, in the signature's
            order: a control that is off as its `off` value (`top_k` 0,
            `top_p` 1), `prefix` as token ids zero-padded to `width`,
            `max_length` as the longest word drawn.
        """
        max_length = width if self.max_length is None else self.max_length
        if max_length > width:
            raise UserError(f"max_length must be at most {width} for this model, got {max_length}",
                            argument="max_length")
        if self.min_length > max_length:
            raise UserError(f"min_length {self.min_length} is above this model's longest word ({max_length}): "
                            f"use {max_length} or less", argument="min_length")
        prefix_ids = vocab.encode(self.prefix)
        if len(prefix_ids) >= max_length:
            raise UserError(f"prefix has {len(prefix_ids)} characters, leaving none of max_length {max_length} "
                            "to sample: shorten it or raise max_length", argument="prefix")
        prefix = np.zeros(width, np.int32)
        prefix[:len(prefix_ids)] = prefix_ids
        resolved = {"prefix": prefix, "max_length": max_length}
        inputs = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            value = resolved.get(field.name, field.metadata["off"] if value is None else value)
            inputs[field.name] = np.asarray(value, field.metadata["dtype"])[()]
        return inputs


def resolve_seed(seed: int | None) -> int:
    """`seed` checked to fit int32 (negative seeds are fine), or a fresh random seed when None."""
    if seed is None:
        return secrets.randbelow(INT32_MAX + 1)
    if not _is_int(seed) or not -INT32_MAX - 1 <= seed <= INT32_MAX:
        raise UserError(f"seed must be a whole number from {-INT32_MAX - 1} to {INT32_MAX}, got {seed}",
                        argument="seed")
    return int(seed)


def control_keywords(function: Callable) -> Callable:
    """`function`, whose `**controls` are `SamplingControls`' fields, showing them as keyword arguments in `help`."""
    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                 annotation=field.type) for field in dataclasses.fields(SamplingControls)]
    function.__signature__ = signature.replace(parameters=params)
    return function
