"""Daemon logging: one handler for the product's loggers, JSON or text lines, every line redacted.

`event` logs a message with structured fields (JSON keys, or `key=value` in text mode).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from gitops.settings.load import REDACTOR

log = logging.getLogger("hiclaw_gitops")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg and the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            body.update(fields)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return REDACTOR.redact(json.dumps(body, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, Mapping) else ""
        line = f"{record.levelname.lower():7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return REDACTOR.redact(line)


def configure_logging(fmt: str = "json", stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """Route the product's loggers to one handler; every line passes the secret redactor."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("hiclaw_gitops")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler


def event(level: int, msg: str, **fields: Any) -> None:
    log.log(level, msg, extra={"fields": fields})
