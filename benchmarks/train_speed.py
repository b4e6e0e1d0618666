"""Training speed: plain `model.fit` against the engine's (and JAX and PyTorch, if installed).

Prints four tables: speed on the lecture MLP (block 3, embed 10, hidden 200,
batch 32) with ratios and peak memory; time per epoch as the data grows (1x,
4x, 16x the names); steps/s as the hidden layer widens; and the best preset's
network with and without XLA. Every figure comes from its own subprocess, so
peak RSS is that configuration's alone, and is the fastest of --tries runs,
the methods taking turns. A row for a bare hand-written XLA loop shows what
this machine allows at all; with jax installed (not a dependency), a `jax` row
runs the same step as a jitted `lax.fori_loop` with in-graph draws, and
`jax-1core` the same in a process pinned to one core (JAX has no thread setting).

The lecture table's methods: `plain-fit` (plain `model.fit` on `make_dataset`),
`cli` (the path `keras-makemore train` takes: `random_minibatches` through
`engine.fit`, on the intra-op threads `train` chooses: one for this step),
`script` (a user's own Keras model and `tf.data` pipeline through `engine.fit`,
TensorFlow's default threads), `script-1thread` (the same on one intra-op thread,
docs/engine.md's tip), and with `--old TREE` the same `cli` path of another
checkout (e.g. `git worktree add /tmp/old-main 0fbba7d`), measured side by side.

    python benchmarks/train_speed.py [--steps 20000] [--tries 3] [--data FILE] [--old TREE] [--json]

`--json` prints only the lecture table, as `{"rows": [{"method": ..., "steps_per_s": ...}, ...]}`.
"""

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from keras_makemore.data.reading import load_names

DEFAULT_DATA = load_names()


def _lecture_corpus(data: str, repeat: int):
    from keras_makemore.data.corpus import Corpus
    from keras_makemore.data.reading import read_words

    return Corpus(read_words(data) * repeat, block_size=3, seed=42)


def _lecture_arrays(data: str, repeat: int):
    corpus = _lecture_corpus(data, repeat)
    return corpus.vocab.size, *corpus.examples("train")


def _measure_keras(method: str, steps: int, data: str, repeat: int, hidden: int) -> dict:
    import keras
    import tensorflow as tf

    from keras_makemore import engine
    from keras_makemore.data.windows import make_dataset
    from keras_makemore.models.mlp import build_model
    from keras_makemore.training.config import TrainConfig, plan_steps
    from keras_makemore.training.recipe import compiled_model
    from keras_makemore.training.threads import auto_intra_op_threads, set_intra_op_threads

    corpus = _lecture_corpus(data, repeat)
    # Threads are set before TensorFlow's runtime starts (cutting the examples starts it).
    # A constant rate, as the other rows (and the old tree's row) use: a schedule costs every path
    # the same extra (measured: the step schedule takes 10,700 steps/s down to 8,800).
    config = TrainConfig(hidden_units=hidden, batch_size=32, steps=10**9, eval_every=1000, lr_schedule="constant",
                         xla="off" if method == "cli-noxla" else "auto")
    if method == "script-1thread":  # docs/engine.md's tip for a small model in a user's script
        tf.config.threading.set_intra_op_parallelism_threads(1)
    elif method.startswith("cli"):  # as `train` does
        set_intra_op_threads(auto_intra_op_threads(config, corpus.vocab.size, 3), explicit=False)
    vocab_size, (x, y) = corpus.vocab.size, corpus.examples("train")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if method.startswith("plain"):
        model = build_model(vocab_size, 3, 10, hidden, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss,
                      steps_per_execution=100 if method == "plain-spe100" else 1)
        ds = make_dataset(x, y, batch_size=32, seed=0).repeat()
        fit = model.fit
    elif method.startswith("script"):  # as a user writes it: their own model and pipeline, the engine's fit
        model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(vocab_size, 10),
                                  keras.layers.Flatten(), keras.layers.Dense(hidden, activation="tanh"),
                                  keras.layers.Dense(vocab_size)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss, steps_per_execution=1000, jit_compile=True)
        ds = make_dataset(x, y, batch_size=32, seed=0, drop_remainder=True).repeat()
        fit = lambda *args, **kwargs: engine.fit(model, *args, **kwargs)  # noqa: E731
    else:  # "cli", "cli-noxla": `train()`'s own model, minibatches and fit
        windows = corpus.windows("train")
        plan = plan_steps(config, len(windows))
        model = compiled_model(config, vocab_size, 3, plan, tf.distribute.get_strategy())
        ds = windows.random_minibatches(32, seed=0, steps=plan.total_steps)
        fit = lambda *args, **kwargs: engine.fit(model, *args, **kwargs)  # noqa: E731
    warm_up = 2 * model.steps_per_execution
    fit(ds, steps_per_epoch=warm_up, epochs=1, verbose=0)  # trace and compile
    start = time.perf_counter()
    fit(ds, steps_per_epoch=steps // warm_up * warm_up, epochs=1, verbose=0)
    return {"seconds": (time.perf_counter() - start) * steps / (steps // warm_up * warm_up), "examples": len(x)}


def _measure_best_preset(xla: bool, steps: int, data: str) -> dict:
    """`--preset mlp-best`'s network and recipe (with dropout, batch 256) through `train`'s own path."""
    import tensorflow as tf

    from keras_makemore import engine
    from keras_makemore.data.corpus import Corpus
    from keras_makemore.data.reading import read_words
    from keras_makemore.training.config import TrainConfig, plan_steps
    from keras_makemore.training.recipe import compiled_model

    config = TrainConfig.from_preset("mlp-best", data=data, xla="on" if xla else "off", eval_every=steps)
    corpus = Corpus(read_words(data), config.block_size, seed=42)
    windows = corpus.windows("train")
    plan = plan_steps(config, len(windows))
    model = compiled_model(config, corpus.vocab.size, corpus.block_size, plan, tf.distribute.get_strategy())
    batches = windows.random_minibatches(config.batch_size, config.seed, plan.total_steps)
    engine.fit(model, batches, steps_per_epoch=plan.steps_per_epoch, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    engine.fit(model, batches, steps_per_epoch=plan.steps_per_epoch, epochs=1, verbose=0)
    return {"seconds": time.perf_counter() - start, "examples": len(windows)}


def _measure_handwritten(steps: int, data: str, repeat: int, hidden: int) -> dict:
    """The ceiling without Keras: the lecture's step as a bare XLA-compiled tf.while_loop.

    Same network, minibatch draw and SGD as ours; the loss is summed in the
    loop, as any training loop that reports it must.
    """
    import tensorflow as tf

    vocab_size, x, y = _lecture_arrays(data, repeat)
    xs, ys = tf.constant(x), tf.constant(y)
    g = tf.random.Generator.from_seed(0)
    C = tf.Variable(g.normal((vocab_size, 10)))
    W1 = tf.Variable(g.normal((30, hidden)) * 0.2)
    b1 = tf.Variable(tf.zeros(hidden))
    W2 = tf.Variable(g.normal((hidden, vocab_size)) * 0.01)
    b2 = tf.Variable(tf.zeros(vocab_size))
    parameters = [C, W1, b1, W2, b2]

    @tf.function(jit_compile=True)
    def run(n):
        def step(i, loss_sum):
            ix = tf.random.stateless_uniform([32], seed=tf.stack([0, i]), maxval=len(x), dtype=tf.int32)
            with tf.GradientTape() as tape:
                emb = tf.gather(C, tf.gather(xs, ix))
                h = tf.tanh(tf.reshape(emb, [-1, 30]) @ W1 + b1)
                logits = h @ W2 + b2
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.gather(ys, ix), logits))
            for p, grad in zip(parameters, tape.gradient(loss, parameters)):
                p.assign_sub(0.1 * tf.convert_to_tensor(grad))
            return i + 1, loss_sum + loss
        return tf.while_loop(lambda i, _: i < n, step, (tf.constant(0), tf.constant(0.0)))[1]

    run(tf.constant(200))
    start = time.perf_counter()
    run(tf.constant(steps))
    return {"seconds": time.perf_counter() - start, "examples": len(x)}


def _measure_jax(steps: int, data: str, repeat: int, hidden: int) -> dict:
    """The lecture's step in JAX: one jitted `lax.fori_loop` with in-graph draws, the loss summed in the loop."""
    import jax
    import jax.numpy as jnp

    vocab_size, x, y = _lecture_arrays(data, repeat)
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    parameters = {"C": jax.random.normal(keys[0], (vocab_size, 10)),
                  "W1": jax.random.normal(keys[1], (30, hidden)) * 0.2, "b1": jnp.zeros(hidden),
                  "W2": jax.random.normal(keys[2], (hidden, vocab_size)) * 0.01, "b2": jnp.zeros(vocab_size)}

    def loss_of(p, ix):
        h = jnp.tanh(p["C"][xs[ix]].reshape(-1, 30) @ p["W1"] + p["b1"])
        logits = h @ p["W2"] + p["b2"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), ys[ix][:, None], axis=1))

    @jax.jit
    def run(p, n):
        def step(i, state):
            p, loss_sum = state
            ix = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(1), i), (32,), 0, len(x))
            loss, grads = jax.value_and_grad(loss_of)(p, ix)
            return jax.tree_util.tree_map(lambda w, g: w - 0.1 * g, p, grads), loss_sum + loss
        return jax.lax.fori_loop(0, n, step, (p, jnp.float32(0.0)))

    jax.block_until_ready(run(parameters, 200))
    start = time.perf_counter()
    jax.block_until_ready(run(parameters, steps))
    return {"seconds": time.perf_counter() - start, "examples": len(x)}


def _measure_torch(steps: int, data: str, repeat: int, hidden: int) -> dict:
    """The lecture's training loop, as written in makemore part 2."""
    import torch

    torch.set_num_threads(os.cpu_count())
    vocab_size, x, y = _lecture_arrays(data, repeat)
    xtr, ytr = torch.tensor(x, dtype=torch.long), torch.tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, 10), generator=g)
    W1 = torch.randn((30, hidden), generator=g)
    b1 = torch.randn(hidden, generator=g)
    W2 = torch.randn((hidden, vocab_size), generator=g)
    b2 = torch.randn(vocab_size, generator=g)
    parameters = [C, W1, b1, W2, b2]
    for p in parameters:
        p.requires_grad = True

    def run(n):
        for i in range(n):
            ix = torch.randint(0, xtr.shape[0], (32,))
            emb = C[xtr[ix]]
            h = torch.tanh(emb.view(-1, 30) @ W1 + b1)
            logits = h @ W2 + b2
            loss = torch.nn.functional.cross_entropy(logits, ytr[ix])
            for p in parameters:
                p.grad = None
            loss.backward()
            lr = 0.1 if i < 100000 else 0.01
            for p in parameters:
                p.data += -lr * p.grad

    run(200)
    start = time.perf_counter()
    run(steps)
    return {"seconds": time.perf_counter() - start, "examples": len(x)}


def _one(args) -> None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if args.method == "torch":
        result = _measure_torch(args.steps, args.data, args.repeat, args.hidden)
    elif args.method in ("jax", "jax-1core"):
        if args.method == "jax-1core":  # JAX has no thread setting: its process gets one core
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        result = _measure_jax(args.steps, args.data, args.repeat, args.hidden)
    elif args.method in ("best-xla", "best-noxla"):
        result = _measure_best_preset(args.method == "best-xla", args.steps, args.data)
    elif args.method == "handwritten-xla":
        result = _measure_handwritten(args.steps, args.data, args.repeat, args.hidden)
    else:
        result = _measure_keras(args.method, args.steps, args.data, args.repeat, args.hidden)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _run(method: str, steps: int, data: str, tries: int, repeat: int = 1, hidden: int = 200) -> dict | None:
    """The fastest of `tries` runs, each in a fresh process: other load on a shared machine only slows one."""
    return _run_alternating([method], steps, data, tries, repeat, hidden)[method]


def _run_alternating(methods: list[str], steps: int, data: str, tries: int, repeat: int = 1, hidden: int = 200,
                     old_tree: str | None = None) -> dict[str, dict | None]:
    """The fastest run of each method, the methods taking turns so that a burst of load hits them alike.

    `old-cli` runs the `ours-xla` method of `old_tree`'s own copy of this script, on its own code.
    """
    runs = {m: [] for m in methods}
    failed = set()
    for _ in range(tries):
        for method in methods:
            if method in failed:
                continue
            script, env, one = __file__, None, method
            if method == "old-cli":
                script, env, one = str(Path(old_tree) / "benchmarks" / "train_speed.py"), dict(
                    os.environ, PYTHONPATH=old_tree), "ours-xla"
            cmd = [sys.executable, script, "--one", one, "--steps", str(steps), "--data", data,
                   "--repeat", str(repeat), "--hidden", str(hidden)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"# {method} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                failed.add(method)
                continue
            runs[method].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    best = {}
    for method, results in runs.items():
        best[method] = None if method in failed else min(results, key=lambda r: r["seconds"])
        if best[method]:
            best[method]["steps_per_s"] = steps / best[method]["seconds"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tries", type=int, default=3, help="runs of each figure; the fastest is kept")
    parser.add_argument("--old", metavar="TREE", help="also measure the cli path of this checkout, side by side")
    parser.add_argument("--json", action="store_true", help="print only the lecture table, as one JSON object")
    parser.add_argument("--one", dest="method", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--hidden", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        return _one(args)

    have_torch, have_jax = (importlib.util.find_spec(name) is not None for name in ("torch", "jax"))
    methods = (["plain-fit", "plain-spe100", "cli-noxla", "cli", "script", "script-1thread"]
               + (["old-cli"] if args.old else []) + ["handwritten-xla"] + (["jax", "jax-1core"] if have_jax else [])
               + (["torch"] if have_torch else []))
    results = _run_alternating(methods, args.steps, args.data, args.tries, old_tree=args.old)
    if args.json:
        print(json.dumps({"rows": [{"method": m, "steps_per_s": round(r["steps_per_s"], 1)}
                                   for m, r in results.items() if r is not None]}))
        return
    print(f"## Lecture MLP (block 3, embed 10, hidden 200), batch 32, {args.steps:,} steps, {os.cpu_count()} cores\n")
    print(f"| {'method':<48} | {'steps/s':>8} | {'examples/s':>10} | {'vs plain fit':>12} | {'vs JAX':>7} | {'vs PyTorch':>10} | {'peak RSS MiB':>12} |")
    print(f"| {'-' * 48} | {'-' * 8}: | {'-' * 10}: | {'-' * 12}: | {'-' * 7}: | {'-' * 10}: | {'-' * 12}: |")
    labels = {"plain-fit": "plain model.fit on tf.data", "plain-spe100": "plain model.fit, steps_per_execution=100",
              "cli-noxla": "keras-makemore train (engine.fit), no XLA", "cli": "keras-makemore train (engine.fit, XLA)",
              "script": "own model + own tf.data + engine.fit (XLA)",
              "script-1thread": "the same script on one intra-op thread", "old-cli": f"keras-makemore train of {args.old}",
              "handwritten-xla": "hand-written tf.while_loop, no Keras, XLA",
              "jax": "JAX: jitted lax.fori_loop, in-graph draws",
              "jax-1core": "the same JAX loop pinned to one core",
              "torch": "the lecture's PyTorch loop"}
    base = results["plain-fit"]["steps_per_s"]
    def versus(other: str) -> str:
        return f"{r['steps_per_s'] / results[other]['steps_per_s']:.2f}x" if results.get(other) else "n/a"

    for m, r in results.items():
        if r is None:
            continue
        print(f"| {labels[m]:<48} | {r['steps_per_s']:>8,.0f} | {r['steps_per_s'] * 32:>10,.0f} | "
              f"{r['steps_per_s'] / base:>11.2f}x | {versus('jax'):>7} | {versus('torch'):>10} | {r['peak_rss_mib']:>12,.0f} |")

    print("\n## Time per epoch (one pass = n_train / 32 steps) as the data grows\n")
    print(f"| {'data':>5} | {'train examples':>14} | {'plain fit s/epoch':>17} | {'ours s/epoch':>12} | {'ratio':>6} | {'ours peak RSS MiB':>17} |")
    print(f"| {'-' * 5}: | {'-' * 14}: | {'-' * 17}: | {'-' * 12}: | {'-' * 6}: | {'-' * 17}: |")
    for repeat in (1, 4, 16):
        plain = _run("plain-fit", args.steps // 4, args.data, args.tries, repeat)
        ours = _run("cli", args.steps, args.data, args.tries, repeat)
        if not (plain and ours):
            continue
        per_epoch = ours["examples"] / 32
        p_s, o_s = per_epoch / plain["steps_per_s"], per_epoch / ours["steps_per_s"]
        print(f"| {repeat:>4}x | {ours['examples']:>14,} | {p_s:>17.1f} | {o_s:>12.1f} | {p_s / o_s:>5.1f}x | {ours['peak_rss_mib']:>17,.0f} |")

    print("\n## Steps/s as the hidden layer widens (batch 32)\n")
    print(f"| {'hidden':>6} | {'plain fit':>9} | {'ours, no XLA':>12} | {'ours, XLA':>9} | {'XLA / no XLA':>12} | {'ours / plain':>12} |")
    print(f"| {'-' * 6}: | {'-' * 9}: | {'-' * 12}: | {'-' * 9}: | {'-' * 12}: | {'-' * 12}: |")
    for hidden in (100, 200, 400, 800):
        plain = _run("plain-fit", args.steps // 4, args.data, args.tries, 1, hidden)
        noxla = _run("cli-noxla", args.steps // 2, args.data, args.tries, 1, hidden)
        xla = _run("cli", args.steps // 2, args.data, args.tries, 1, hidden)
        if not (plain and noxla and xla):
            continue
        best = max(noxla["steps_per_s"], xla["steps_per_s"])
        print(f"| {hidden:>6} | {plain['steps_per_s']:>9,.0f} | {noxla['steps_per_s']:>12,.0f} | {xla['steps_per_s']:>9,.0f} | "
              f"{xla['steps_per_s'] / noxla['steps_per_s']:>11.2f}x | {best / plain['steps_per_s']:>11.2f}x |")

    from keras_makemore.training.presets import PRESETS

    preset = PRESETS["mlp-best"]
    print(f"\n## The best preset's network (block {preset['block_size']}, embed {preset['embed_dim']}, "
          f"hidden {preset['hidden_units']}, dropout {preset['dropout']}), batch {preset['batch_size']}\n")
    steps = max(100, args.steps // 40 // 100 * 100)
    noxla = _run("best-noxla", steps, args.data, args.tries)
    xla = _run("best-xla", steps, args.data, args.tries)
    if noxla and xla:
        column = f"{preset['steps']:,} steps with XLA"
        print(f"| {'no XLA steps/s':>14} | {'XLA steps/s':>11} | {'XLA / no XLA':>12} | {column:>22} |")
        print(f"| {'-' * 14}: | {'-' * 11}: | {'-' * 12}: | {'-' * 22}: |")
        print(f"| {noxla['steps_per_s']:>14,.0f} | {xla['steps_per_s']:>11,.0f} | "
              f"{xla['steps_per_s'] / noxla['steps_per_s']:>11.2f}x | {preset['steps'] / xla['steps_per_s']:>20.0f} s |")


if __name__ == "__main__":
    main()
