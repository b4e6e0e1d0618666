"""Words in, training examples out: reading, vocabulary, split, windows, word rows, corpora in memory or streamed."""
