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


def sample(model_path: str, num_words: int, seed: int, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, prefix: str = "", min_length: int = 0, max_length: int = 0,
           exclude: frozenset = frozenset(), max_draws: int | None = None) -> Iterator[str]:
    """The first `num_words` words of `seed`'s stream that are not in `exclude`, among `max_draws` drawn.

    `top_k` 0 and `top_p` 1 are off; `max_length` 0 is the file's own limit.
    """
    interpreter = Interpreter(model_path=model_path)
    generate = interpreter.get_signature_runner("generate")
    meta = interpreter.get_signature_runner("decode")(tokens=np.zeros((1, 1), np.int32))
    vocabulary, width = check_metadata(meta)
    ids = {chr(code): i for i, code in enumerate(vocabulary) if i}
    unknown = [c for c in prefix if c not in ids]
    if unknown:
        raise ValueError(f"--prefix: {unknown[0]!r} is not a character of this model")
    if len(prefix) >= (max_length or width):
        raise ValueError(f"--prefix must be shorter than --max-length {max_length or width}")
    prefix_ids = np.zeros(width, np.int32)
    prefix_ids[:len(prefix)] = [ids[c] for c in prefix]
    controls = {"seed": np.int32(seed), "temperature": np.float32(temperature), "top_k": np.int32(top_k),
                "top_p": np.float32(top_p), "prefix": prefix_ids, "min_length": np.int32(min_length),
                "max_length": np.int32(max_length)}
    max_draws = (100 * num_words if exclude else num_words) if max_draws is None else max_draws
    found = drawn = 0
    while found < num_words and drawn < max_draws:
        wanted = num_words - found
        n = min(CHUNK, max_draws - drawn, 2 * wanted + 16 if exclude else wanted)
        tokens = generate(num_words=np.int32(n), first_row=np.int32(drawn), **controls)["tokens"]
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
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature > 0 (default 1.0)")
    parser.add_argument("--top-k", type=int, default=0, help="only the K likeliest characters (default 0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, 0 < P <= 1 (default 1: all)")
    parser.add_argument("--prefix", default="", help="start every word with these characters")
    parser.add_argument("--min-length", type=int, default=0, help="no word ends before N characters")
    parser.add_argument("--max-length", type=int, default=0, help="cut words at N characters (default 0: the file's limit)")
    parser.add_argument("--exclude", metavar="FILE", help="never print the words of FILE, one a line (e.g. the training words)")
    parser.add_argument("--max-draws", type=int, default=None, help="with --exclude: draw at most N words (default 100 x -n)")
    args = parser.parse_args(argv)
    checks = ((0 <= args.num < 2**31, "--num must be from 0 to 2147483647"),
              (args.seed is None or -2**31 <= args.seed < 2**31, "--seed must fit in 32 bits"),
              (1e-6 <= args.temperature < math.inf, "--temperature must be a finite number of at least 1e-6"),
              (0 <= args.top_k < 2**31, "--top-k must be 0 (off) or more"),
              (0 < args.top_p <= 1, "--top-p must be above 0 and at most 1"),
              (0 <= args.min_length < 2**31, "--min-length must be 0 or more"),
              (0 <= args.max_length < 2**31, "--max-length must be 0 (the file's limit) or more"),
              (args.max_draws is None or 0 <= args.max_draws < 2**31, "--max-draws must be from 0 to 2147483647"))
    for ok, message in checks:
        if not ok:
            parser.error(message)
    seed = secrets.randbelow(2**31) if args.seed is None else args.seed
    try:
        exclude = frozenset(_read_words(args.exclude)) if args.exclude else frozenset()
        found = 0
        for word in sample(args.model, args.num, seed, args.temperature, args.top_k, args.top_p, args.prefix,
                           args.min_length, args.max_length, exclude, args.max_draws):
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
