"""Training: the one loop, runs (config, metrics, checkpoints), and the from-scratch recipe."""
