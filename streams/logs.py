"""Log formats of the worker: Faust's text lines (default) or one JSON object per line
(`POSTEE_LOG_FORMAT=json`), for log shippers.

Each JSON line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, plus
`event_id` and `command_id` when the call passed them with `extra=`, and `exception`
with the traceback when there is one. Secrets are never logged (they are resolved only
inside an attempt and scrubbed from what it returns), so no redaction is needed here.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "logging_config"]

FORMATS = ("text", "json")

#: Attributes of a record that a call may set with `extra=` and that a line carries.
ID_FIELDS = ("event_id", "command_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def logging_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for JSON lines on standard output (what the worker's
    `logging_config` takes; it replaces Faust's colored text handler)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }
