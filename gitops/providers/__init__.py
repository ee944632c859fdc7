"""Providers: the backend protocol, traits, the registry and the wiring from settings."""
