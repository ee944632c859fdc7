"""Status: per-resource results of each run, written back to git and read back."""
