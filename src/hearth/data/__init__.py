"""Data for training: synthesizing question–answer pairs from documents."""
