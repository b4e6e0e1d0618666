"""keras-makemore: makemore's character-level language models (the part-2 MLP by default), in Keras.

The public API, loaded on first use so that `keras-makemore --help` does not
wait for TensorFlow:

    from keras_makemore import Corpus, build_model, fit, make_dataset, sample_words

Modules, data flowing one way: `config` (TrainConfig, presets, defaults) and
`rundir` (the run directory's files) need no TensorFlow; `data`, `models` (one
module per architecture, a registry and their contract) and
`engine` (the fast loop inside `model.fit` for any Keras model) are the
building blocks, with `streaming` for word lists bigger than memory; `training` is the recipe that joins them; `runs`, `plots`,
`report`, `sweep` and `cli` read and use what it saved.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "UserError": "errors",
    "Vocabulary": "data", "Corpus": "data", "Split": "data", "read_words": "data",
    "split_words": "data", "build_examples": "data", "make_dataset": "data", "load_names": "data",
    "random_minibatches": "data", "Windows": "data",
    "StreamedCorpus": "streaming", "open_corpus": "streaming",
    "build_model": "models.mlp", "get_model_type": "models", "MODEL_NAMES": "models", "ModelType": "models.base",
    "next_token_logits": "models.base",
    "fit": "engine",
    "TrainConfig": "config", "PRESETS": "config", "TuneConfig": "config", "train": "training",
    "SampleWords": "callbacks", "BestModelCheckpoint": "callbacks", "StopOnNonFiniteLoss": "callbacks",
    "AtomicCSVLogger": "callbacks", "EarlyStoppingOnValLoss": "callbacks",
    "sample_words": "sampling", "iter_words": "sampling", "novelty": "sampling",
    "SamplingControls": "controls", "score_words": "scoring", "WordScore": "scoring",
    "evaluate_splits": "evaluation", "fit_verdict": "evaluation", "SplitLoss": "evaluation",
    "Run": "runs",
    "EmbeddingProjector": "callbacks",
    "plot_embeddings": "plots", "plot_loss": "plots", "plot_run": "plots", "plot_sweep": "plots",
    "plot_lr_find": "plots",
    "write_report": "report",
    "LRFinder": "lr_finder", "LRFinderResult": "lr_finder", "find_lr": "lr_finder",
    "suggest_learning_rates": "lr_finder", "find_lr_for_config": "training",
    "export_run": "export", "write_saved_model": "export", "convert_to_litert": "export",
    "ExportedModel": "exported",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_makemore' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keras_makemore.{_EXPORTS[name]}"), name)
