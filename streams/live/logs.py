"""Log format of the worker: Faust's coloured text, or one JSON object per line.

`CHURN_LOG_FORMAT=json` (settings.log_format) gives JSON lines for log
shippers: `ts` (RFC 3339 UTC), `level`, `logger`, `message`, plus `exc` with
the traceback when there is one. Levels come from `CHURN_LOG_LEVEL`.

Never log customer data: customer ids are pseudonymous but still stay out of
info-level logs; our own code logs partitions, topics and counts only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra= fields are kept (stringified if not JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(log_format: str, log_level: str) -> dict[str, Any] | None:
    """A dictConfig for mode/Faust's Worker; None keeps Faust's own text format."""
    if log_format != "json":
        return None
    level = log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "streams.live.logs.JsonFormatter"}},
        "handlers": {"default": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                                 "formatter": "json", "level": level}},
        "root": {"level": level, "handlers": ["default"]},
    }
