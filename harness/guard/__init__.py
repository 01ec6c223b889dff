"""Guard a real training run: the gate's checks at start, every N steps, at every
checkpoint save and at the end, stopping the run at the first hard failure."""
