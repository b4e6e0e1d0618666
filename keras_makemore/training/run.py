"""Read a run directory back: model, vocabulary, config and data."""

import dataclasses
import os
import zipfile
from pathlib import Path

import keras

from keras_makemore.data.corpus import Corpus
from keras_makemore.data.streaming import StreamedCorpus, open_corpus
from keras_makemore.data.vocabulary import Vocabulary
from keras_makemore.errors import UserError
from keras_makemore.models.keras_model import model_shape
from keras_makemore.training.config import TrainConfig
from keras_makemore.training.rundir import (
    CONFIG_FILE,
    MODEL_FILE,
    VOCAB_FILE,
    check_file,
    info_int,
    info_str,
    read_config,
)


@dataclasses.dataclass
class Run:
    """A trained run loaded from its directory.

    Example:

    ```python
    run = Run.load("runs/names")
    words = sample_words(run.model, run.vocab, run.config.block_size, 10, seed=0)
    ```
    """

    path: Path
    config: TrainConfig
    vocab: Vocabulary
    model: keras.Model
    info: dict

    @classmethod
    def load(cls, path: str | os.PathLike, model: keras.Model | None = None) -> "Run":
        """The run in `path`; `model`, if given, is its model already in memory (as `train` returns it), not read
        again from the run's file."""
        path = Path(path)
        if not path.is_dir():
            problem = "is not a directory" if path.exists() else "not found"
            raise UserError(f"run_dir {path} {problem}: pass the run directory of a `train` run", argument="run_dir")
        model_path = path / MODEL_FILE
        if not model_path.exists():
            raise UserError(f"run_dir {path} holds no trained model ({MODEL_FILE} is missing): train one there, "
                            "or resume it", argument="run_dir")
        config, info = read_config(path)
        vocab = Vocabulary.load(check_file(path / VOCAB_FILE))
        model = load_model(model_path) if model is None else model
        shape = model_shape(model)
        if shape["vocab_size"] != vocab.size:
            raise UserError(
                f"the model in {path} expects {shape['vocab_size']} tokens but {VOCAB_FILE} has {vocab.size}: "
                "the files come from different runs; restore the run's own vocabulary"
            )
        config.block_size = shape["block_size"]
        return cls(path, config, vocab, model, info)

    def corpus(self) -> Corpus | StreamedCorpus:
        """The run's data, split as in training (the data file must still be where it was)."""
        data = info_str(self.info, "data")
        if not data or not Path(data).exists():
            raise UserError(f"data file {data} of the run is gone: put it back, or pass another data file",
                            argument="data")
        return self.corpus_from(data)

    def corpus_from(self, data: str | os.PathLike) -> Corpus | StreamedCorpus:
        return open_corpus(data, self.config.block_size, seed=self.config.split_seed, vocab=self.vocab)

    @property
    def max_length(self) -> int:
        """A default cap on sampled word length: twice the longest training word, within [32, 256]."""
        return min(256, max(32, 2 * info_int(self.info, "max_word_length", 16, 1, 10**9)))


def run_of_export(path: str | os.PathLike) -> Run | None:
    """The run whose `export/` folder holds the artifact at `path`, or `None`."""
    run_dir = Path(path).resolve().parent.parent
    if Path(path).resolve().parent.name != "export" or not (run_dir / CONFIG_FILE).exists():
        return None
    try:
        return Run.load(run_dir)
    except UserError:
        return None


def load_model(path: str | os.PathLike) -> keras.Model:
    """`keras.saving.load_model`, with a clear error for a missing or corrupt file."""
    from keras_makemore.models import layers  # noqa: F401  (registers the word models' own layers)

    path = check_file(Path(path), limit=None)  # a zip's reader reads what its directory says, not the whole file
    if not path.exists():
        raise UserError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path)  # safe_mode: a config that names code is refused, never run
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"model file {path} is corrupt or not a keras-makemore model ({type(e).__name__}): "
                        "retrain the run, or restore the file") from None
