"""Validate: JSON Schema and the org rules, every problem at once as located diagnostics."""
