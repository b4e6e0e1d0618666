"""keras-makemore: makemore's character-level language models (the part-2 MLP by default), in Keras.

The public API, loaded on first use so that `keras-makemore --help` does not
wait for TensorFlow:

    from keras_makemore import Corpus, build_model, fit, make_dataset, sample_words

The packages, data flowing one way (a test checks that no import goes in a
circle):

- `data`: reading word lists, the vocabulary, the split, context windows, word
  rows, corpora in memory or streamed from disk;
- `models`: one module per model type (network, presets, search rows), the
  registry and the contract (`models.base`); `models.keras_model` reaches a
  built model;
- `engine`: `fit`, the chunked XLA loop inside `model.fit`, for any Keras model;
- `training`: `TrainConfig` and its presets, the recipe (`train`), callbacks,
  optimizers, the LR finder, the run directory;
- `analysis`: losses and the fit verdict, plots, reports;
- `sampling`: the controls, the one in-graph sampling loop, words, scores;
- `artifacts`: the SavedModel and `.tflite` files, written and opened again;
- `search`: `tune` (KerasTuner) and `sweep`;
- `cli`: the `keras-makemore` command, a thin layer over the above.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "UserError": "errors",
    "Vocabulary": "data.vocabulary", "Corpus": "data.corpus", "Split": "data.split", "read_words": "data.reading",
    "split_words": "data.split", "build_examples": "data.windows", "make_dataset": "data.windows",
    "load_names": "data.reading", "random_minibatches": "data.windows", "Windows": "data.windows",
    "StreamedCorpus": "data.streaming", "open_corpus": "data.streaming",
    "build_model": "models.mlp", "get_model_type": "models", "MODEL_NAMES": "models", "ModelType": "models.base",
    "next_token_logits": "models.keras_model",
    "fit": "engine",
    "TrainConfig": "training.config", "PRESETS": "training.presets", "TuneConfig": "search.space",
    "train": "training.recipe",
    "SampleWords": "training.callbacks", "BestModelCheckpoint": "training.callbacks",
    "StopOnNonFiniteLoss": "training.callbacks", "AtomicCSVLogger": "training.callbacks",
    "EarlyStoppingOnValLoss": "training.callbacks", "EmbeddingProjector": "training.callbacks",
    "sample_words": "sampling.words", "iter_words": "sampling.words", "novelty": "sampling.words",
    "SamplingControls": "sampling.controls", "score_words": "sampling.scoring", "WordScore": "sampling.scoring",
    "evaluate_splits": "analysis.evaluation", "fit_verdict": "analysis.evaluation", "SplitLoss": "analysis.evaluation",
    "Run": "training.run",
    "plot_embeddings": "analysis.plots", "plot_loss": "analysis.plots", "plot_run": "analysis.plots",
    "plot_sweep": "analysis.plots", "plot_lr_find": "analysis.plots",
    "write_report": "analysis.report",
    "LRFinder": "training.lr_finder", "LRFinderResult": "training.lr_finder", "find_lr": "training.lr_finder",
    "suggest_learning_rates": "training.lr_finder", "find_lr_for_config": "training.recipe",
    "export_run": "artifacts.writer", "write_saved_model": "artifacts.writer", "convert_to_litert": "artifacts.writer",
    "ExportedModel": "artifacts.reader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_makemore' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_makemore.{_EXPORTS[name]}"), name)
