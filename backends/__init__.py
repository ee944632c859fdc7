"""Adapters to the outside world (Docker, Kubernetes, Matrix, storage, gateway) behind one small protocol."""
