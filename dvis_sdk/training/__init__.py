"""Training: synthetic data, datasets, losses, query noise and trainers for DVIS / DVIS++."""
