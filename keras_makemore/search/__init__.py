"""Searching settings: `tune` (a KerasTuner search over `TrainConfig`) and `sweep` (a grid of network sizes)."""
