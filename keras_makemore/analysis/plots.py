"""Pictures of a run: the characters in embedding space, and the loss over training.

Figures are drawn on `matplotlib.figure.Figure` objects, which need no pyplot
backend: plots work on servers without a display, and importing this module
leaves the backend of a notebook or script as it was.
"""

import itertools
import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from keras_makemore import atomic
from keras_makemore.data.vocabulary import MARKER_DISPLAY, MARKER_ID, Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.training import rundir

EMBEDDINGS_PNG = "embeddings.png"
LOSS_PNG = "loss.png"
_DPI = 120
# How the loss plot's title names a model's size settings.
_SHORT_NAMES = {"block_size": "block", "embed_dim": "embedding", "hidden_units": "hidden", "layers": "layers",
                "heads": "heads"}
_THOUSANDS = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")


def token_labels(vocab: Vocabulary) -> list[str]:
    """One printable label per token id: the character, `.` for the marker, `␣` for a space.

    If `.` is itself a character of the data, the marker is shown as `<end>`
    so that the two stay apart.
    """
    marker = "<end>" if MARKER_DISPLAY in vocab.chars else MARKER_DISPLAY
    labels = [marker if i == MARKER_ID else vocab.token(i) for i in range(vocab.size)]
    return ["␣" if label.isspace() else label for label in labels]


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Project `vectors` `[n, d]` onto their two principal components.

    Returns the `[n, 2]` coordinates and the share of the variance they keep
    (1.0 when `d <= 2`, where the vectors are returned as they are, padded with
    zeros when `d == 1`).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.shape[1] <= 2:
        return np.pad(vectors, ((0, 0), (0, 2 - vectors.shape[1]))), 1.0
    centered = vectors - vectors.mean(axis=0)
    _, singular, components = np.linalg.svd(centered, full_matrices=False)
    variance = singular**2
    return centered @ components[:2].T, float(variance[:2].sum() / variance.sum())


def plot_embeddings(
    embeddings: np.ndarray, vocab: Vocabulary, path: str | os.PathLike, title: str = "Character embeddings"
) -> Path:
    """Draw every character at its embedding point, as in makemore part 2, and save a PNG.

    Args:
        embeddings: the embedding table `[vocab.size, embed_dim]`.
        vocab: the vocabulary, for the labels.
        path: the PNG to write.
        title: the first line of the title; a second line says how the points
            were placed (the raw 2-D vectors, or a PCA projection).

    Example:

    ```python
    table = run.model.get_layer("embedding").get_weights()[0]
    plot_embeddings(table, run.vocab, "embeddings.png")
    ```
    """
    embeddings = np.asarray(embeddings)
    if embeddings.shape[0] != vocab.size:
        raise ValueError(f"embeddings must have one row per token ({vocab.size}), got {embeddings.shape[0]} rows")
    dim = embeddings.shape[1]
    points, kept = project_2d(embeddings)
    if dim == 2:
        how, xlabel, ylabel = "the 2-D embedding vectors as they are", "embedding dimension 1", "embedding dimension 2"
    elif dim == 1:
        how, xlabel, ylabel = "the 1-D embedding on the x axis", "embedding value", ""
    else:
        how = f"{dim}-D embeddings projected by PCA onto 2 axes ({kept:.0%} of the variance)"
        xlabel, ylabel = "principal component 1", "principal component 2"

    fig = Figure(figsize=(8, 8))
    ax = fig.subplots()
    colors = ["tab:orange" if i == MARKER_ID else "tab:blue" for i in range(vocab.size)]
    ax.scatter(points[:, 0], points[:, 1], s=360, c=colors, zorder=2)
    for (x, y), label in zip(points, token_labels(vocab)):
        ax.text(x, y, label, ha="center", va="center", color="white", fontsize=11 if len(label) == 1 else 7,
                fontweight="bold", zorder=3)
    ax.set_title(f"{title}\n{how}", fontsize=12)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if dim == 1:
        ax.set_yticks([])
    ax.margins(0.08)
    ax.grid(True, alpha=0.4, zorder=0)
    ax.annotate("characters that the model uses alike sit close together; "
                f"'{token_labels(vocab)[MARKER_ID]}' (orange) is the start/end marker",
                xy=(0.5, -0.1), xycoords="axes fraction", ha="center", fontsize=9, color="0.35")
    return _save(fig, path)


def plot_loss(
    steps: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    path: str | os.PathLike,
    lr_steps: Sequence[int] | None = None,
    lr_values: Sequence[float] | None = None,
    title: str = "Loss during training",
) -> Path:
    """Plot train and val loss against the optimizer step, with the learning rate on a second axis.

    Args:
        steps: the optimizer step at the end of each validation interval.
        train_loss: the mean training loss of each interval.
        val_loss: the validation loss at the end of each interval.
        path: the PNG to write.
        lr_steps, lr_values: the learning rate at these steps (drawn on the
            right axis, log-scaled when it spans more than a factor of 3).
        title: the plot's title.

    Example:

    ```python
    plot_loss([100, 200], [2.6, 2.3], [2.7, 2.5], "loss.png", lr_steps=[0, 199], lr_values=[0.1, 0.1])
    ```
    """
    if not len(steps):
        raise UserError("steps is empty: there is no loss to plot yet", argument="steps")
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    marker = "o" if len(steps) <= 30 else None
    ax.plot(steps, train_loss, marker=marker, color="tab:blue", label="train loss (mean over each interval)")
    ax.plot(steps, val_loss, marker=marker, color="tab:orange", label="val loss (end of each interval)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean NLL per character, nats)")
    ax.set_xlim(0, max(steps) * 1.02)
    ax.xaxis.set_major_formatter(_THOUSANDS)
    ax.grid(True, alpha=0.4)
    best = int(np.argmin(val_loss))
    ax.plot(steps[best], val_loss[best], marker="*", markersize=16, color="tab:red", linestyle="none",
            label=f"best val loss {val_loss[best]:.4f} at step {steps[best]:,} (the saved model)")
    handles, labels = ax.get_legend_handles_labels()
    if lr_steps is not None and len(lr_steps):
        lr_ax = ax.twinx()
        lr_ax.plot(lr_steps, lr_values, color="tab:green", linestyle="--", linewidth=1.5, label="learning rate")
        lr_ax.set_ylabel("learning rate", color="tab:green")
        lr_ax.tick_params(axis="y", colors="tab:green")
        if max(lr_values) > 3 * min(lr_values) > 0:
            lr_ax.set_yscale("log")
        else:
            lr_ax.set_ylim(0, max(lr_values) * 1.15)
        more_handles, more_labels = lr_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.set_title(title)
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path, layout=False)


def plot_sweep(rows: Sequence[dict], path: str | os.PathLike, title: str = "Hyperparameter sweep") -> Path:
    """Plot val loss (solid) and train loss (dotted) against parameter count, one line per embedding size.

    Args:
        rows: sweep rows with `block_size`, `embed_dim`, `hidden_units`,
            `params`, `train_loss` and `val_loss` (as `sweep()` returns them).
        path: the PNG to write.
        title: the plot's title.
    """
    fig = Figure(figsize=(9, 6))
    ax = fig.subplots()
    embed_dims = sorted({r["embed_dim"] for r in rows})
    block_sizes = sorted({r["block_size"] for r in rows})
    colors = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(embed_dims))]
    line_styles = ["-", "--", "-.", (0, (5, 1, 1, 1, 1, 1))]
    markers = ["o", "s", "^", "D", "v", "P"]
    for (e, embed_dim), (b, block_size) in itertools.product(enumerate(embed_dims), enumerate(block_sizes)):
        line = sorted((r for r in rows if r["embed_dim"] == embed_dim and r["block_size"] == block_size),
                      key=lambda r: r["params"])
        if not line:
            continue
        params = [r["params"] for r in line]
        label = f"embedding {embed_dim}" + (f", block {block_size}" if len(block_sizes) > 1 else "")
        style = dict(color=colors[e], marker=markers[b % len(markers)])
        ax.plot(params, [r["val_loss"] for r in line], linestyle=line_styles[b % len(line_styles)],
                linewidth=2, markersize=7, label=label, **style)
        ax.plot(params, [r["train_loss"] for r in line], linestyle=":", linewidth=1, markersize=4, alpha=0.6, **style)
        for r in line:
            ax.annotate(f"h{r['hidden_units']}", (r["params"], r["val_loss"]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8, color=colors[e])
    best = min(rows, key=lambda r: r["val_loss"])
    ax.plot(best["params"], best["val_loss"], marker="*", markersize=18, color="tab:red", linestyle="none",
            label=f"best val {best['val_loss']:.4f}: {best['cell']}")
    ax.plot([], [], color="0.4", linestyle=":", linewidth=1, label="dotted: train loss of the same cells")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
    ax.xaxis.set_major_formatter(_THOUSANDS)
    ax.xaxis.set_minor_formatter(_THOUSANDS)
    ax.tick_params(axis="x", which="minor", labelsize=8)
    ax.set_xlabel("parameters (log scale); h = hidden units")
    ax.set_ylabel("loss (mean NLL per character, nats)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.35)
    ax.legend(fontsize=9, loc="best")
    return _save(fig, path)


def plot_lr_find(result, path: str | os.PathLike | None = None, ax=None) -> Figure:
    """Plot an `LRFinderResult`: loss against learning rate on a log axis, suggestions marked.

    Args:
        result: what `find_lr` or `LRFinder` found.
        path: save the figure here as PNG (atomically).
        ax: draw into this matplotlib `Axes` instead of a new figure.

    Returns:
        The matplotlib `Figure`.
    """
    if ax is None:
        ax = Figure(figsize=(8, 5), layout="constrained").subplots()
    rates, raw, smooth = result.learning_rates, result.losses, result.smoothed_losses
    ax.plot(rates, raw, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    ax.plot(rates, smooth, color="tab:blue", linewidth=2, label="smoothed loss")
    colors = {"valley": "tab:red", "steepest": "tab:green", "minimum": "tab:purple"}
    for name, sug in result.suggestions.items():
        star = " (suggested)" if name == result.suggest else ""
        ax.axvline(sug.learning_rate, color=colors.get(name, "gray"), linestyle="--", linewidth=1)
        ax.plot([sug.learning_rate], [np.interp(np.log(sug.learning_rate), np.log(rates), smooth)], "o",
                color=colors.get(name, "gray"), label=f"{name} {sug.learning_rate:.3g}{star}")
    ax.set_xscale("log")
    ax.set_ylim(*_loss_limits(raw, smooth))
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate sweep: {len(raw)} steps, {result.stop_reason}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    figure = ax.get_figure()
    if path is not None:
        with atomic.atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
    return figure


def _loss_limits(raw: np.ndarray, smooth: np.ndarray) -> tuple[float, float]:
    """Y limits that show the descent and cut off the explosion at the end."""
    finite_raw = raw[np.isfinite(raw)]
    finite_smooth = smooth[np.isfinite(smooth)]
    if not len(finite_raw):
        return 0.0, 1.0
    low = float(finite_raw.min())
    high = float(max(finite_smooth[0], finite_smooth[: int(np.argmin(finite_smooth)) + 1].max()))
    margin = 0.1 * (high - low) or 0.1 * abs(high) or 1.0
    return low - margin, high + 3 * margin


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write `embeddings.png` and `loss.png` for a run directory (into `out_dir`, default the run's own).

    Returns the paths of the two PNG files.
    """
    from keras_makemore.models import get_model_type
    from keras_makemore.models.keras_model import embedding_table
    from keras_makemore.training.optimizers import make_lr_schedule
    from keras_makemore.training.run import Run

    run = Run.load(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run.path
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out_dir {out_dir} is a file, not a directory: pass a directory for the PNG files",
                        argument="out_dir")
    name = run.path.resolve().name
    embeddings = plot_embeddings(embedding_table(run.model), run.vocab, out_dir / EMBEDDINGS_PNG,
                                 title=f"Character embeddings of run {name} (best val checkpoint)")

    history = rundir.read_history(run.path)
    if not history:
        raise UserError(f"run_dir {run.path} has no history yet: plot it after its first validation pass",
                        argument="run_dir")
    plan = rundir.step_plan(run.info)
    steps = [(e + 1) * plan.steps_per_epoch for e in history["epoch"]]
    # The rate at up to 4,000 steps: a curve as smooth to the eye, and no array of every step of a long run.
    lr_steps = np.unique(np.linspace(0, plan.total_steps - 1, min(plan.total_steps, 4000)).astype(np.int64))
    schedule = make_lr_schedule(run.config, plan.total_steps)
    lr_values = np.full(len(lr_steps), schedule) if isinstance(schedule, float) else np.asarray(schedule(lr_steps))
    c = run.config
    loss = plot_loss(
        steps, history["loss"], history["val_loss"], out_dir / LOSS_PNG, lr_steps, lr_values,
        title=f"Loss of run {name}: {c.model}, {c.optimizer}, "
              + "".join(f"{_SHORT_NAMES[field]} {getattr(c, field)}, " for field in get_model_type(c.model).hyperparameters
                        if field in _SHORT_NAMES)
              + f"batch {c.batch_size}",
    )
    return embeddings, loss


def plot_tune(rows: list[dict], path: str | os.PathLike, title: str = "Search") -> Path:
    """Val loss of every finished trial against its parameter count and against its training seconds, a marker
    per model type."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator

    done = [r for r in rows if r["status"] == "COMPLETED" and math.isfinite(r["val_loss"])]
    fig = Figure(figsize=(12, 5.5))
    by_params, by_time = fig.subplots(1, 2, sharey=True)
    best = min(done, key=lambda r: r["val_loss"])
    steps = [r["steps_trained"] for r in done]
    norm = Normalize(min(steps), max(steps))  # one scale for both panels
    markers = dict(zip(dict.fromkeys(r["model"] for r in done), "osD^vPXh"))
    for ax, key, label in ((by_params, "params", "parameters (log scale)"),
                           (by_time, "train_seconds", "training seconds (all rounds of the run)")):
        for model, marker in markers.items():
            mine = [r for r in done if r["model"] == model]
            ax.scatter([r[key] for r in mine], [r["val_loss"] for r in mine], c=[r["steps_trained"] for r in mine],
                       norm=norm, cmap="viridis", s=36, alpha=0.85, marker=marker,
                       label=model if len(markers) > 1 else None)
        ax.plot(best[key], best["val_loss"], marker="*", markersize=18, color="tab:red", linestyle="none",
                label=f"best val {best['val_loss']:.4f}: trial {best['trial']}")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.35)
    by_params.set_xscale("log")
    by_params.xaxis.set_major_formatter(_THOUSANDS)
    by_params.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    by_params.xaxis.set_minor_formatter(_THOUSANDS)
    by_params.tick_params(axis="x", which="minor", labelsize=8)
    by_params.set_ylabel("best val loss of the trial (nats per character)")
    legend = by_params.legend(fontsize=9, loc="best")
    for handle in legend.legend_handles[:-1]:  # a model type's marker, not the colour of its first trial
        handle.set_array(None)
        handle.set_color("0.35")
    colorbar = fig.colorbar(by_time.collections[0], ax=by_time)
    colorbar.set_label("steps trained")
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig, path: str | os.PathLike, layout: bool = True) -> Path:
    path = Path(path)
    if layout:
        fig.tight_layout()
    # The title also goes into the PNG's text chunks, for file browsers and screen readers.
    title = " ".join(ax.get_title().replace("\n", " - ") for ax in fig.axes if ax.get_title())
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png", metadata={"Title": title, "Software": "keras-makemore"})
    return path
