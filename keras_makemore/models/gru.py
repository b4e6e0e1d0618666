"""`gru`: makemore.py's recurrent network with gated recurrent units."""

from keras_makemore.models.base import WORD, ModelType
from keras_makemore.models.rnn import build_recurrent, count_recurrent, decode_step, initial_state

MODEL = ModelType(
    name="gru",
    summary="Embedding -> GRU over the word -> Dense (makemore.py's GRU)",
    context=WORD,
    hyperparameters=("embed_dim", "hidden_units"),
    build=lambda c, vocab_size, length: build_recurrent("gru", vocab_size, length, c.embed_dim, c.hidden_units,
                                                        seed=c.seed),
    count_parameters=lambda c, vocab_size, length: count_recurrent(3, c, vocab_size),
    initial_state=initial_state,
    decode_step=decode_step,
)
