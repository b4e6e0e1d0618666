#!/usr/bin/env python3
"""Sample words from a keras-makemore `.tflite` file with LiteRT alone.

Needs only numpy and ai-edge-litert (no TensorFlow, no keras-makemore):

    pip install numpy ai-edge-litert
    python sample_tflite.py model.tflite -n 10 --seed 0 --temperature 0.8

One invoke of the file's `generate` signature samples every word inside the
graph; its `decode` signature turns the token ids into Unicode code points.
The same seed gives the same words as `ExportedModel.generate` in
keras-makemore, on any machine.
"""

import argparse
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def sample(model_path: str, num_words: int, seed: int, temperature: float = 1.0) -> list[str]:
    """`num_words` words from the `.tflite` file at `model_path`."""
    interpreter = Interpreter(model_path=model_path)
    generate = interpreter.get_signature_runner("generate")
    decode = interpreter.get_signature_runner("decode")
    tokens = generate(seed=np.int32(seed), num_words=np.int32(num_words),
                      temperature=np.float32(temperature))["tokens"]
    code_points = decode(tokens=tokens)["code_points"]
    return ["".join(map(chr, row.tolist())).split("\0", 1)[0] for row in code_points]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sample words from a keras-makemore .tflite file.")
    parser.add_argument("model", help="a .tflite file written by `keras-makemore export`")
    parser.add_argument("-n", "--num", type=int, default=20, help="number of words (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="the same seed gives the same words (default: random)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature > 0 (default 1.0)")
    args = parser.parse_args(argv)
    if args.num < 0 or not args.temperature > 0:
        parser.error("--num must be 0 or more and --temperature above 0")
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    try:
        words = sample(args.model, args.num, seed, args.temperature)
    except (ValueError, KeyError) as e:
        print(f"sample_tflite: error: cannot sample from {args.model}: {e}", file=sys.stderr)
        return 2
    print("\n".join(words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
