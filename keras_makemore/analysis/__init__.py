"""Looking at a run: losses per split and the fit verdict, plots, and the Markdown report."""
