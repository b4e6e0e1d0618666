#!/usr/bin/env python3
"""Sample words from a keras-makemore `.tflite` file with LiteRT alone.

Needs only numpy and ai-edge-litert (no TensorFlow, no keras-makemore):

    pip install numpy ai-edge-litert
    python sample_tflite.py model.tflite -n 10 --seed 0 --temperature 0.8 --top-p 0.9 --prefix ma

The file's `generate` signature samples whole words inside the graph, its
`decode` signature holds the vocabulary. The same seed and options give the
same words as `keras-makemore sample` on the run, its SavedModel or this file.
Words are drawn in chunks of rows of the seed's stream, so `-n` can be large,
and words listed in `--exclude FILE` (e.g. the training words) are skipped.
"""

import argparse
import itertools
import math
import os
import secrets
import sys
from typing import Iterator

import numpy as np
from ai_edge_litert.interpreter import Interpreter

CHUNK = 10_000  # words per invoke
INT32_MAX = 2**31 - 1

# The controls this script knows: (type, value that turns it off, check, help). Which controls a file takes,
# and their dtypes, are read from its `generate` signature; keras_makemore.sampling.controls.SamplingControls defines them.
CONTROLS = {
    "temperature": (float, 1.0, lambda v: 1e-6 <= v < math.inf, "softmax temperature, a finite number of at least 1e-6"),
    "top_k": (int, 0, lambda v: 0 <= v <= INT32_MAX, "only the K likeliest characters (0: all)"),
    "top_p": (float, 1.0, lambda v: 0 < v <= 1, "nucleus sampling, 0 < P <= 1 (1: all)"),
    "prefix": (str, "", lambda v: True, "start every word with these characters"),
    "min_length": (int, 0, lambda v: 0 <= v <= INT32_MAX, "no word ends before N characters"),
    "max_length": (int, 0, lambda v: 0 <= v <= INT32_MAX, "cut words at N characters (0: the file's limit)"),
}
_ROWS = ("seed", "num_words", "first_row")  # the inputs of `generate` that are not controls


def sample(model_path: str, num_words: int, seed: int, exclude: frozenset = frozenset(),
           max_draws: int | None = None, **controls) -> Iterator[str]:
    """The first `num_words` words of `seed`'s stream that are not in `exclude`, among `max_draws` drawn.

    `controls` are those of `CONTROLS`, by name; one not given is off.
    """
    interpreter = Interpreter(model_path=model_path)
    generate = interpreter.get_signature_runner("generate")
    meta = interpreter.get_signature_runner("decode")(tokens=np.zeros((1, 1), np.int32))
    vocabulary, width = check_metadata(meta)
    values = {name: off for name, (_, off, _, _) in CONTROLS.items()} | controls
    ids = {chr(code): i for i, code in enumerate(vocabulary) if i}
    prefix, max_length = values["prefix"], values["max_length"]
    unknown = [c for c in prefix if c not in ids]
    if unknown:
        raise ValueError(f"--prefix: {unknown[0]!r} is not a character of this model")
    if len(prefix) >= (max_length or width):
        raise ValueError(f"--prefix must be shorter than --max-length {max_length or width}")
    values["prefix"] = [ids[c] for c in prefix] + [0] * (width - len(prefix))
    inputs = {}
    for name, detail in generate.get_input_details().items():
        if name not in CONTROLS and name not in _ROWS:
            raise ValueError(f"its generate signature takes {name!r}, which this script does not know: "
                             "use the sample_tflite.py of the keras-makemore that exported it")
        if name in CONTROLS:
            inputs[name] = np.asarray(values[name], detail["dtype"]).reshape(detail["shape"])
    max_draws = (100 * num_words if exclude else num_words) if max_draws is None else max_draws
    found = drawn = 0
    while found < num_words and drawn < max_draws:
        wanted = num_words - found
        n = min(CHUNK, max_draws - drawn, 2 * wanted + 16 if exclude else wanted)
        tokens = generate(seed=np.int32(seed), num_words=np.int32(n), first_row=np.int32(drawn), **inputs)["tokens"]
        for row in tokens.tolist():
            word = "".join(chr(vocabulary[t]) for t in itertools.takewhile(bool, row))
            if word not in exclude:
                yield word
                found += 1
                if found == num_words:
                    return
        drawn += n


MAX_LENGTH = 4096  # the longest words a file may declare (`keras-makemore export` writes at most 256)


def check_metadata(meta: dict) -> tuple[list[int], int]:
    """The file's vocabulary and word length limit, checked: a .tflite file may come from anyone.

    The code points must be the marker (0), then characters (no surrogates)
    in strictly increasing order, at least one; `max_length` from 1 to 4,096.
    """
    vocabulary, width = np.asarray(meta["vocabulary"]), np.asarray(meta["max_length"])
    chars = vocabulary[1:].astype(np.int64)
    if (vocabulary.ndim != 1 or vocabulary.dtype.kind not in "iu" or len(vocabulary) < 2 or vocabulary[0] != 0
            or ((chars < 1) | (chars > 0x10FFFF) | ((chars >= 0xD800) & (chars <= 0xDFFF))).any()
            or (np.diff(chars) <= 0).any()):
        raise ValueError("its vocabulary is damaged (code points must be 0, then distinct characters in order)")
    if width.shape != () or width.dtype.kind not in "iu" or not 1 <= int(width) <= MAX_LENGTH:
        raise ValueError(f"its max_length must be from 1 to {MAX_LENGTH}, got {width.tolist()}")
    return vocabulary.tolist(), int(width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sample words from a keras-makemore .tflite file.")
    parser.add_argument("model", help="a .tflite file written by `keras-makemore export`")
    parser.add_argument("-n", "--num", type=int, default=20, help="number of words (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same words (default: random)")
    for name, (kind, off, _, help) in CONTROLS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=off,
                            help=help + (f" (default {off})" if off not in ("", 0) else ""))
    parser.add_argument("--exclude", metavar="FILE", help="never print the words of FILE, one a line (e.g. the training words)")
    parser.add_argument("--max-draws", type=int, default=None, help="with --exclude: draw at most N words (default 100 x -n)")
    args = parser.parse_args(argv)
    checks = [(0 <= args.num <= INT32_MAX, f"--num must be from 0 to {INT32_MAX}"),
              (args.seed is None or -INT32_MAX - 1 <= args.seed <= INT32_MAX, "--seed must fit in 32 bits"),
              (args.max_draws is None or 0 <= args.max_draws <= INT32_MAX, f"--max-draws must be from 0 to {INT32_MAX}")]
    checks += [(valid(getattr(args, name)), f"--{name.replace('_', '-')}: {help}, got {getattr(args, name)}")
               for name, (_, _, valid, help) in CONTROLS.items()]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    try:
        exclude = frozenset(_read_words(args.exclude)) if args.exclude else frozenset()
        found = 0
        controls = {name: getattr(args, name) for name in CONTROLS}
        for word in sample(args.model, args.num, seed, exclude, args.max_draws, **controls):
            print(word)
            found += 1
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, KeyError, OSError) as e:
        print(f"sample_tflite: error: cannot sample from {args.model}: {e}", file=sys.stderr)
        return 2
    if found < args.num:
        print(f"# found {found} of {args.num} words: the others drawn were excluded; raise --max-draws",
              file=sys.stderr)
    return 0


def _read_words(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:
        return [line.strip() for line in f if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
