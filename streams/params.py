"""Reading a cadence parameter file (the output of `churn-signals fit`).

Used by `--params` and by the `params` detector setting (file or
CHURN_DETECTOR_PARAMS), so a deployment can point at a fitted file without a
flag. Every problem is one ConfigError line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from detectors.cadence import CadenceParams
from detectors.pareto import ParetoParams
from schemas.errors import ConfigError


def load_params(path: str) -> dict[str, Any]:
    """Read and check a parameter file."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"parameter file {path} not found") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"parameter file {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"parameter file {path}: expected a JSON object")
    try:
        cadence = CadenceParams.from_mapping(data)
        if "pareto_nbd" in data:
            ParetoParams.from_mapping(data["pareto_nbd"], cadence.time_unit)
    except ConfigError as exc:
        raise ConfigError(f"parameter file {path}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter file {path}: {exc}") from None
    return data
