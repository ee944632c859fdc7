"""Plan: the difference between desired state and a baseline, as one immutable value; baselines."""
