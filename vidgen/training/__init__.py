"""Training: the Accelerate loop, EMA, checkpoints and resume, validation."""
