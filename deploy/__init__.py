"""Deployment helpers run from a clone: the embedded local stack and the demo that reconciles example-org."""
