"""The daemon: poll loop, webhook and health HTTP, lock, logs, metrics, escalation."""
