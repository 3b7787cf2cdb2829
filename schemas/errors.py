"""The project's single exception root.

    ChurnSignalsError                 base of every error the project raises on purpose
    ├── SchemaLoadError               a schema file is missing or uses an unsupported keyword
    ├── InvalidEvent                  an input message failed decoding or validation (goes to the DLQ)
    │     .reason  short, bounded code used as a metric label (malformed_json, schema, ...)
    │     .stage   where it failed: decode | validate | semantic
    ├── ConfigError                   bad configuration (file, env or flag); message says how to fix it
    └── CommandError                  a CLI command cannot proceed (unreachable broker, unreadable file)

Every message is one line a user can act on; the CLI prints it without a traceback.
"""

from __future__ import annotations


class ChurnSignalsError(Exception):
    """Base class for all errors raised on purpose by churn-signals."""


class SchemaLoadError(ChurnSignalsError):
    """A schema file cannot be loaded or compiled."""


class InvalidEvent(ChurnSignalsError):
    """An input message is not a valid event; it belongs in the dead-letter topic."""

    def __init__(self, reason: str, message: str, stage: str = "validate") -> None:
        super().__init__(message)
        self.reason = reason
        self.stage = stage


class ConfigError(ChurnSignalsError):
    """A configuration value is missing, malformed or out of range."""


class CommandError(ChurnSignalsError):
    """A command cannot run; the message says what to do."""
