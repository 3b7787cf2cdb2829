"""The contract: JSON Schema files for every input and output event, and the
loader and decoder built from them.

Nothing here imports `detectors/` or `streams/`; nothing here reads the clock.
"""

from schemas.decode import EVENT_TYPES, Event, EventDecoder, load_schema, schema_path
from schemas.errors import (
    ChurnSignalsError,
    CommandError,
    ConfigError,
    InvalidEvent,
    SchemaLoadError,
)

__all__ = [
    "EVENT_TYPES",
    "ChurnSignalsError",
    "CommandError",
    "ConfigError",
    "Event",
    "EventDecoder",
    "InvalidEvent",
    "SchemaLoadError",
    "load_schema",
    "schema_path",
]
