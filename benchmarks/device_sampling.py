"""Sampling speed of every model's `.tflite` file, as a phone or an edge board runs it: words/s and one word's latency.

Trains each model with its preset's network for `--steps` steps (300 by
default) on names.txt, exports it, and times the `.tflite` `generate`
signature through `ExportedModel` (one LiteRT invoke per call, on the CPU):

- words/s in calls of 1,000 words (the best of 3 calls), and as a fraction of
  the MLP's in the same run, the figure to compare across machines and loads;
- one word: the median of 30 calls of one word.

With `--baseline`, each word model is also exported with `generate` rerunning
the whole sequence at every character (`write_saved_model(carry_state=False)`,
how every artifact sampled before the state was carried), and timed alike.
The figures measured before the state was carried are printed beside.

With `--compare A.tflite B.tflite ...`, those files (another commit's export of
a kept run, say) are timed one word at a time in turn, in one process: rounds
of one call for each of rows 0 to 29 of seed 0, each file in turn in every
round, the best round's mean per word. Files timed side by side this way can
be compared where the drift between minutes would hide a difference.

    python benchmarks/device_sampling.py [--models gru transformer] [--steps 300] [--baseline] [--runtimes] [--keep DIR]
    python benchmarks/device_sampling.py --compare OLD/model.tflite NEW/model.tflite [--rounds 15]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from keras_makemore.artifacts.reader import ExportedModel
from keras_makemore.artifacts.writer import convert_to_litert, export_run, write_saved_model
from keras_makemore.models import MODEL_NAMES, get_model_type  # noqa: E402
from keras_makemore.sampling.controls import SamplingControls
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.presets import preset_name
from keras_makemore.training.recipe import train
from keras_makemore.training.run import Run

# Measured on fe2ce50 (whole sequence rerun at every character), 2 cores, load about 3: words/s in calls of
# 1,000 words, the fraction of the MLP's, one word's latency.
BEFORE = {"mlp": (169_902, 1.0, 0.14), "rnn": (24_996, 0.147, 0.26), "bow": (20_873, 0.123, 0.18),
          "gru": (4_917, 0.029, 1.78), "transformer": (1_051, 0.006, 1.15)}
WORDS = 1_000


def run_dir_for(name: str, steps: int, root: Path) -> Path:
    """A run of `name` with its preset's network, trained `steps` steps and exported (reused when there)."""
    run_dir = root / name
    if not (run_dir / "model.keras").exists():
        config = TrainConfig.from_preset(preset_name(None, name), model=name, steps=steps, eval_every=steps)
        train(config, run_dir, verbose=0, num_samples=0)
    if not (run_dir / "export" / "model.tflite").exists():
        export_run(run_dir, check=False)
    return run_dir


def baseline_tflite(run_dir: Path) -> Path:
    """The run's `.tflite` with `generate` rerunning the whole sequence at every character."""
    path = run_dir / "baseline" / "model.tflite"
    if not path.exists():
        run = Run.load(run_dir)
        saved = write_saved_model(run.model, run.vocab, run_dir / "baseline" / "saved_model", run.max_length,
                                  carry_state=False)
        convert_to_litert(saved, path)
    return path


def timings(path: Path) -> dict:
    """words/s in calls of `WORDS` words (best of 3), one word's median latency (30 calls), characters a word."""
    model = ExportedModel(path)
    inputs = SamplingControls().inputs(model.vocab, model.max_length)

    def call(n, first_row=0):
        start = time.perf_counter()
        tokens = model.generate_tokens(0, first_row, n, inputs)
        return time.perf_counter() - start, tokens

    call(WORDS)  # warm up: allocation at this batch size
    best, tokens = min(call(WORDS, first_row=i * WORDS) for i in range(3))
    call(1)
    one = statistics.median(call(1, first_row=i)[0] for i in range(30))
    return {"words_per_s": WORDS / best, "one_word_ms": one * 1e3, "chars": float((tokens > 0).sum(1).mean())}


def runtimes(path: Path) -> dict:
    """Microseconds per call from Python: `ExportedModel` (LiteRT's Interpreter) against a `CompiledModel` with
    its buffers allocated once, for the calls `ExportedModel` makes (best of 5 runs)."""
    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel

    from keras_makemore.quiet import quiet_stderr

    model = ExportedModel(path)
    with quiet_stderr():
        compiled = CompiledModel.from_file(str(path))

    def prepared(key, inputs):
        buffers = {}
        for name, value in inputs.items():
            buffers[name] = compiled.create_input_buffer_by_name(key, name)
        details = compiled.get_output_tensor_details(key)
        outputs = {name: compiled.create_output_buffer_by_name(key, name) for name in details}

        def call():
            for name, value in inputs.items():
                buffers[name].write(np.asarray(value))
            compiled.run_by_name(key, buffers, outputs)
            return {name: outputs[name].read(int(np.prod(d["shape"])), np.dtype(d["dtype"]))
                    for name, d in details.items()}
        return call

    def best(fn, calls):
        fn()
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            runs.append((time.perf_counter() - start) / calls)
        return min(runs) * 1e6

    controls = SamplingControls().inputs(model.vocab, model.max_length)
    generate = {"seed": np.int32(0), "first_row": np.int32(0), **controls}
    context, token, state = np.zeros((1, model.block_size), np.int32), np.zeros(1, np.int32), model.initial_state(1)
    return {
        "next_token, 1 context": (best(lambda: model.next_token(context), 1000),
                                  best(prepared("next_token", {"context": context}), 1000)),
        "generate, 1 word": (best(lambda: model.generate_tokens(0, 0, 1, controls), 100),
                             best(prepared("generate", {**generate, "num_words": np.int32(1)}), 100)),
        "generate_fixed, 100 words": (best(lambda: model._signatures["generate_fixed"](**generate), 10),
                                      best(prepared("generate_fixed", generate), 10)),
        "decode_step, 1 word": (best(lambda: model.decode_step(token, 1, state), 1000),
                                best(prepared("decode_step", {"token": token, "position": np.int32(1),
                                                              "state": state}), 1000)),
    }


def one_word_in_turn(paths: list[str], rounds: int) -> list[float]:
    """Microseconds per word of each `.tflite` file, one word a `generate` call, the files timed in turn."""
    models = [ExportedModel(path) for path in paths]
    inputs = [SamplingControls().inputs(model.vocab, model.max_length) for model in models]
    best = [float("inf")] * len(models)
    for _ in range(rounds):
        for i, (model, controls) in enumerate(zip(models, inputs)):
            start = time.perf_counter()
            for row in range(30):
                model.generate_tokens(0, row, 1, controls)
            best[i] = min(best[i], (time.perf_counter() - start) / 30 * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "rnn", "bow", "gru", "transformer"],
                        choices=MODEL_NAMES)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each model (default 300)")
    parser.add_argument("--baseline", action="store_true",
                        help="also time each word model with the whole sequence rerun at every character")
    parser.add_argument("--keep", metavar="DIR", help="keep the trained runs in DIR (and reuse those there)")
    parser.add_argument("--runtimes", action="store_true",
                        help="also time each call from Python on LiteRT's Interpreter and on its CompiledModel")
    parser.add_argument("--compare", nargs="+", metavar="TFLITE",
                        help="only time these .tflite files, one word a call, in turn in one process")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of --compare (default 15)")
    args = parser.parse_args()
    if args.compare:
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; one word a call, rows 0-29 of seed 0, "
              f"the files in turn; the best of {args.rounds} rounds\n\n| file | one word |\n| --- | ---: |")
        for path, us in zip(args.compare, one_word_in_turn(args.compare, args.rounds)):
            print(f"| {path} | {us:,.1f} us |")
        return
    models = args.models if "mlp" in args.models else ["mlp", *args.models]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        rows = {}
        for name in models:
            run_dir = run_dir_for(name, args.steps, root)
            rows[name] = timings(run_dir / "export" / "model.tflite")
            if args.baseline and get_model_type(name).context == "word":
                rows[name]["baseline"] = timings(baseline_tflite(run_dir))
            if args.runtimes:
                rows[name]["runtimes"] = runtimes(run_dir / "export" / "model.tflite")
    mlp = rows["mlp"]["words_per_s"]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.steps} steps a model; "
          f"words/s: the best of 3 calls of {WORDS:,} words; one word: the median of 30 calls\n")
    header = "| model | words/s | fraction of the MLP's | one word | characters a word |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if args.baseline:
        header += " whole sequence rerun: words/s, fraction, one word |"
        rule += " ---: |"
    header += " before (fe2ce50): words/s, fraction, one word | gain in fraction |"
    rule += " ---: | ---: |"
    print(header + "\n" + rule)
    for name, r in rows.items():
        line = (f"| {name} | {r['words_per_s']:,.0f} | {r['words_per_s'] / mlp:.3f} | {r['one_word_ms']:.2f} ms | "
                f"{r['chars']:.1f} |")
        if args.baseline:
            b = r.get("baseline")
            line += (f" {b['words_per_s']:,.0f}, {b['words_per_s'] / mlp:.3f}, {b['one_word_ms']:.2f} ms |"
                     if b else " |")
        before = BEFORE.get(name)
        line += (f" {before[0]:,}, {before[1]}, {before[2]} ms | {r['words_per_s'] / mlp / before[1]:.1f}x |"
                 if before else " | |")
        print(line)
    if args.runtimes:
        print("\n| model | call from Python | Interpreter (ExportedModel) | CompiledModel |\n| --- | --- | ---: | ---: |")
        for name, r in rows.items():
            for call, (interpreter, compiled) in r["runtimes"].items():
                print(f"| {name} | {call} | {interpreter:,.1f} us | {compiled:,.1f} us |")


if __name__ == "__main__":
    main()
