"""Memory graph -> (emotion, polarity, text) training examples."""
