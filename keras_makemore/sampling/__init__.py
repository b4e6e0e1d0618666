"""Sampling and scoring words: the controls, the one in-graph sampling loop, words from a model, scores of words."""
