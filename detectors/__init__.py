"""The functional core: per-customer state machine, detectors and deadline index.

No faust, asyncio, aiokafka, prometheus_client or clock reads in here. Input: a
validated event or a clock tick with `now` passed in; output: new state and a
list of decisions. The same input sequence gives the same output, byte for byte.
"""

from detectors.config import DetectorConfig
from detectors.decision import Decision
from detectors.engine import Engine
from detectors.partition import PartitionCore
from detectors.state import CustomerState

__all__ = ["CustomerState", "Decision", "DetectorConfig", "Engine", "PartitionCore"]
