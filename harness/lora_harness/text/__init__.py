"""Words in and out: training rows and batches, the built-in two-voice corpus, generation with stop tokens, voice scoring."""
