"""`keras-makemore report` on a real short run."""

import re
import shutil

import pytest
from conftest import assert_readable_png, run_cli

from keras_makemore.analysis.evaluation import evaluate_splits, fit_verdict
from keras_makemore.analysis.report import write_report
from keras_makemore.training.run import Run

pytestmark = pytest.mark.slow  # runs the CLI in a subprocess


def test_report_names_real_figures_and_the_runs_numbers(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run_dir)
    result = run_cli("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "report.md")
    report = (run_dir / "report.md").read_text(encoding="utf-8")

    figures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", report)
    assert sorted(figures) == ["embeddings.png", "loss.png"]
    for name in figures:
        assert_readable_png(run_dir / name)

    run = Run.load(run_dir)
    losses = evaluate_splits(run.model, run.corpus())
    for split, loss in losses.items():
        assert (f"| {split} | {loss.examples:,} | {loss.nll:.4f} | {loss.perplexity:.3f} | "
                f"{loss.bits_per_char:.4f} |") in report
    assert f"**Verdict:** {fit_verdict(losses['train'].nll, losses['val'].nll)}" in report
    assert f"| **total** | | **{run.model.count_params():,}** |" in report
    assert "| hidden_units | 32 |" in report and "| optimizer | adam |" in report

    samples = re.findall(r"^\d+\. (\S+)( \*\(in training data\)\*)?$", report, flags=re.M)
    assert len(samples) == 20
    known = set(run.corpus().split.train)
    assert all(bool(marked) == (word in known) for word, marked in samples)
    novel = sum(word not in known for word, _ in samples)
    assert f"{novel} of 20 ({novel / 20:.0%}) are novel" in report

    assert write_report(run_dir).read_text(encoding="utf-8") == report  # seeded: the same report again
