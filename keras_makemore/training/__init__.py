"""Training: `TrainConfig` and its presets, the recipe (`train`), its callbacks, optimizer, LR finder and run directory."""
