"""Settings: the model, and loading it from a file plus environment and flags."""
