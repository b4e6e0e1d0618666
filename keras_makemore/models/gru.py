"""`gru`: makemore.py's recurrent network with gated recurrent units."""

from keras_makemore.models.base import WORD, ModelType
from keras_makemore.models.rnn import build_recurrent, count_recurrent, decode_step, initial_state

# Weight decay 0.1 measured val 1.9616 against 1.9827 with 0.01 (docs/models.md).
PRESETS = {"gru": dict(embed_dim=64, hidden_units=128, batch_size=64, steps=8_000, eval_every=1_000,
                       optimizer="adamw", lr=3e-3, lr_schedule="cosine", weight_decay=0.1)}


MODEL = ModelType(
    name="gru",
    summary="Embedding -> GRU over the word -> Dense (makemore.py's GRU)",
    context=WORD,
    hyperparameters={"embed_dim": "embedding size", "hidden_units": "state"},
    build=lambda c, vocab_size, length: build_recurrent("gru", vocab_size, length, c.embed_dim, c.hidden_units,
                                                        seed=c.seed),
    count_parameters=lambda c, vocab_size, length: count_recurrent(3, c, vocab_size),
    presets=PRESETS,
    search_space={"embed_dim": (32, 64, 128), "hidden_units": (64, 128, 256)},
    initial_state=initial_state,
    decode_step=decode_step,
)
