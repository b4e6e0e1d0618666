"""A Markdown report of one run: settings, size, losses, verdict, samples and plots."""

import os
from pathlib import Path

from keras_makemore import atomic
from keras_makemore.analysis.evaluation import evaluate_splits, fit_verdict
from keras_makemore.analysis.plots import plot_run
from keras_makemore.models import get_model_type
from keras_makemore.sampling.words import printable, sample_words
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.run import Run
from keras_makemore.training.rundir import read_finished_history, step_plan

REPORT_FILE = "report.md"


def write_report(run_dir: str | os.PathLike, num_samples: int = 20, seed: int | None = None) -> Path:
    """Write `report.md` into `run_dir`, drawing `embeddings.png` and `loss.png` beside it.

    Args:
        run_dir: a finished (or checkpointed) run directory.
        num_samples: how many sampled words to list.
        seed: seed of the samples; default the run's own seed, so the report
            is the same each time it is written.

    Returns:
        The path of the report.

    Example:

    ```python
    print(write_report("runs/names").read_text())
    ```
    """
    run = Run.load(run_dir)
    corpus = run.corpus()
    embeddings_png, loss_png = plot_run(run.path)
    losses = evaluate_splits(run.model, corpus)
    verdict = fit_verdict(losses["train"].nll, losses["val"].nll)
    seed = run.config.seed if seed is None else seed
    words = sample_words(run.model, run.vocab, run.config.block_size, num_samples, seed=seed,
                         max_length=run.max_length)
    known = set(corpus.known(words))  # the file searched, not held as a word list: a streamed one stays on disk
    history = read_finished_history(run.path)

    lines = [f"# Run report: {run.path.resolve().name}", ""]
    lines += ["## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(run.config.to_json()[name])} |" for name in TrainConfig.__dataclass_fields__]
    lines += [f"| data sha256 | `{run.info.get('data_sha256', 'unknown')}` |",
              f"| total steps | {step_plan(run.info).total_steps:,} |"]
    if "train_seconds_last_session" in history:
        lines.append(f"| training time (last session) | {history['train_seconds_last_session']:.1f} s |")

    lines += ["", "## Model", "", f"`{run.config.model}`: {get_model_type(run.config.model).summary}", "",
              "| layer | shape | parameters |", "| --- | --- | --- |"]
    for layer in run.model.layers:
        if layer.weights:
            shapes = " + ".join("x".join(map(str, w.shape)) for w in layer.weights)
            lines.append(f"| {layer.name} | {shapes} | {layer.count_params():,} |")
    lines.append(f"| **total** | | **{run.model.count_params():,}** |")

    lines += ["", "## Losses", "",
              "Mean negative log-likelihood per character in nats (the end marker counts as a character), "
              "of the best-validation checkpoint.", "",
              "| split | examples | loss | perplexity | bits/char |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, loss in losses.items():
        lines.append(f"| {name} | {loss.examples:,} | {loss.nll:.4f} | {loss.perplexity:.3f} | {loss.bits_per_char:.4f} |")
    lines += ["", f"**Verdict:** {verdict}", ""]

    novel = sum(w not in known for w in words)
    lines += ["## Samples", "",
              f"{len(words)} words sampled with seed {seed} at temperature 1.0; "
              f"{novel} of {len(words)} ({novel / max(1, len(words)):.0%}) are novel, "
              "not among the training words (those that are carry *(in training data)*).", ""]
    lines += [f"{i}. {printable(w) or '(empty)'}" + ("" if w not in known else " *(in training data)*")
              for i, w in enumerate(words, 1)]

    lines += ["", "## Plots", "",
              "Train and val loss over training, with the learning rate on the right axis:", "",
              f"![Loss during training]({loss_png.name})", "",
              "Every character at its point in the embedding space:", "",
              f"![Character embeddings]({embeddings_png.name})", ""]
    path = run.path / REPORT_FILE
    atomic.write_text(path, "\n".join(lines))
    return path


def _cell(value) -> str:
    if value is None or value == []:
        return "-"
    return str(value).replace("|", "\\|")
