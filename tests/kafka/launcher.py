"""A real Apache Kafka broker for the tests: fetched from Maven Central, started on loopback.

The broker runs in KRaft mode as one process that is both broker and controller
(``process.roles=broker,controller``). Nothing is downloaded from outside Maven
Central and nothing listens beyond 127.0.0.1.

Jars
    ``tests/kafka/pom.xml`` pins the Kafka release (``kafka.version``) and the
    log4j2 slf4j binding. ``ensure_jars()`` runs Maven once to copy them into
    ``<cache>/<version>/libs`` and writes a stamp (``<cache>/<version>/.complete``,
    holding the pom's sha256) after a complete copy; later calls only check the
    stamp and never call Maven again. An interrupted copy has no stamp and is
    redone; a changed pom is fetched again. ``<cache>`` is ``.cache/kafka`` at
    the repository root unless the environment sets ``CHURN_KAFKA_CACHE``.
    Needs ``java`` (17+) on PATH or in ``JAVA_HOME`` and, for the first fetch,
    ``mvn``.

Broker
    ::

        from tests.kafka.launcher import KafkaBroker

        with KafkaBroker() as kafka:            # temp data dir, free loopback ports
            use(kafka.bootstrap)                # "127.0.0.1:NNNNN"

        broker = KafkaBroker(tmp_path / "kafka").start()
        broker.kill()                           # SIGKILL, like a crash; data dir kept
        broker.restart()                        # same data dir, same ports
        broker.stop()                           # SIGTERM (controlled shutdown), then SIGKILL

    ``start()`` writes ``<data dir>/server.properties``, formats the storage
    (``kafka.tools.StorageTool format --standalone``) when ``<data dir>/data``
    has no ``meta.properties`` yet, starts ``kafka.Kafka`` in its own session and
    returns once the broker lists itself in a Metadata response. The broker
    logs to ``<data dir>/server.log`` (``tests/kafka/log4j2.yaml``); what the
    JVM prints itself goes to ``<data dir>/broker.out``. A broker without a
    ``data_dir`` lives in a temporary directory that ``stop()`` deletes (and
    that a failed ``start()`` deletes too: the error carries the log's tail).

    Timing on 2 cores, warm: format 0.8 s, JVM start to ready 1.0-1.3 s (2.5-3 s
    on the very first start, which also writes the class-data archive the later
    ones load, ``<cache>/<version>/broker-<java build>.jsa``). ``restart()``
    after ``kill()`` takes about 3 s more: the restarted controller accepts the
    broker's new registration only once the old one's session has expired
    (``broker.session.timeout.ms``, lowered to 3 s here from 9 s).

    Later needs fit through the constructor: ``listeners={"PLAINTEXT": None,
    "SASL_SSL": None}`` adds a listener on another free port (``bootstrap_for``
    gives its address) and ``extra_config`` adds or overrides any
    ``server.properties`` entry (keystores, JAAS, replication factors). A quorum
    of several nodes shares one ``cluster_id``, sets ``controller.quorum.voters``
    (or ``controller.quorum.bootstrap.servers``) in ``extra_config`` and passes
    the matching ``format_args`` (e.g. ``["--initial-controllers", ...]``);
    ``KafkaCluster(3)`` does that for N nodes on free ports (static quorum, internal
    topics replicated 3 ways, a 384 MB heap per node), launching every JVM before
    waiting for any: on 2 cores three nodes are ready in 7-8 s. ``scram_users``
    adds SCRAM credentials when the storage is formatted (``tests/kafka/secure.py`` builds a
    SASL_SSL and an mTLS listener with them and certificates made by the test).

Command line (``make kafka``; ``make kafka-jars`` only fetches)
    ``python -m tests.kafka.launcher [--port N] [--data-dir DIR] [--nodes 3]`` prints
    ``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:N[,...]`` and keeps the broker up until
    Ctrl-C or SIGTERM, then stops it cleanly. ``--fetch-only`` fetches the jars
    and prints their directory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from schemas.errors import CommandError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.yaml"
CACHE_ENV = "CHURN_KAFKA_CACHE"
JAVA_MIN = 17

JAVA_MISSING = "Apache Kafka for the tests needs Java 17+: install openjdk-17-jre-headless"
MVN_MISSING = "Apache Kafka for the tests needs Maven to fetch the broker jars: install maven"

# One broker per test session on a 2-core machine: a small heap, and C1 only. Measured on 2 cores,
# JVM start to "answers Metadata": 2.8 s with these options, 3.9 s with the full JIT, 1.0-1.2 s once
# the class-data archive exists (see class_data_sharing). G1 vs Serial GC made no difference.
JVM_OPTS = (
    "-Xms256m", "-Xmx512m",
    "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
#: The nodes of a three-node cluster, beside a worker and the tests on 2 cores: a smaller heap each.
CLUSTER_JVM_OPTS = ("-Xms128m", "-Xmx384m", *JVM_OPTS[2:])
TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")

CONTROLLER = "CONTROLLER"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
LOG_TAIL = 20

T = TypeVar("T")


# -- jars ---------------------------------------------------------------------------------------

def kafka_version() -> str:
    """The Kafka release pinned in tests/kafka/pom.xml."""
    m = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text())
    if m is None:
        raise CommandError(f"{POM}: no <kafka.version> property")
    return m.group(1)


def cache_dir() -> Path:
    """Where fetched jars are kept: $CHURN_KAFKA_CACHE, else .cache/kafka at the repository root."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser().resolve() if env else ROOT / ".cache" / "kafka"


def java_bin() -> str:
    """The java executable (JAVA_HOME first, then PATH), checked to be Java 17 or newer."""
    return _java()[0]


@functools.cache
def _java() -> tuple[str, str]:
    """(path, a short id of its exact build); the id names the class-data archive made with it."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home, "bin", "java") if home else None
    java = str(candidate) if candidate is not None and candidate.is_file() else shutil.which("java")
    if java is None:
        raise CommandError(JAVA_MISSING)
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        raise CommandError(f"{JAVA_MISSING} ({java} -version failed)") from None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = 0 if m is None else int(m.group(2) or 0) if m.group(1) == "1" else int(m.group(1))
    if major < JAVA_MIN:
        raise CommandError(f"{JAVA_MISSING} ({java} is Java {major or 'of unknown version'})")
    build = hashlib.sha256(f"{os.path.realpath(java)}\n{out.stderr}{out.stdout}".encode()).hexdigest()[:12]
    return java, build


def _pom_digest() -> str:
    """The pom's content without comments and layout: editing a comment does not fetch again."""
    text = re.sub(r"<!--.*?-->", "", POM.read_text(), flags=re.DOTALL)
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def _complete(stamp: Path, libs: Path, digest: str) -> bool:
    try:
        lines = stamp.read_text().split()
    except OSError:
        return False
    return bool(lines) and lines[0] == digest and all((libs / name).is_file() for name in lines[1:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetches of one version between processes (two test sessions, make kafka)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAVEN_BOILERPLATE = re.compile(r"^\[ERROR\]\s*(|To see the full stack trace.*|Re-run Maven using.*"
                               r"|For more information about the errors.*|\[Help \d+\] http.*)$")


def _tail(text: str, n: int = LOG_TAIL) -> str:
    lines = [ANSI.sub("", line).rstrip() for line in text.splitlines()]
    return "\n".join([line for line in lines if line.strip() and not MAVEN_BOILERPLATE.match(line)][-n:])


def ensure_jars() -> Path:
    """The directory of the broker's jars; runs Maven the first time (or after a pom change)."""
    java_bin()  # no point fetching what cannot run
    version = kafka_version()
    home = cache_dir() / version
    libs, stamp, digest = home / "libs", home / ".complete", _pom_digest()
    if _complete(stamp, libs, digest):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise CommandError(MVN_MISSING)
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):
        if _complete(stamp, libs, digest):  # another process fetched while we waited
            return libs
        stamp.unlink(missing_ok=True)
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "--no-transfer-progress", "-Dstyle.color=never", "-f", str(POM),
               "dependency:copy-dependencies", f"-DoutputDirectory={partial}"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                               stdin=subprocess.DEVNULL, check=False)
            rc, output = r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired as exc:
            parts = [p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in (exc.stdout, exc.stderr)]
            rc, output = -1, "".join(parts) + "\n(timed out after 900 s)"  # (bytes even with text=True)
        jars = sorted(p.name for p in partial.glob("*.jar"))
        if rc != 0 or f"kafka_2.13-{version}.jar" not in jars:
            detail = _tail(output, 12) or f"exit code {rc}, no kafka_2.13-{version}.jar copied"
            raise CommandError(f"Maven could not fetch Apache Kafka {version} for the tests "
                               f"(mvn -f {POM} dependency:copy-dependencies); its last lines:\n{detail}")
        # Swap in the complete copy: the old libs stay in place until then, since a broker started
        # from them may still open a jar lazily (same names resolve to the new copy).
        old = home / f"libs.old-{os.getpid()}"
        if libs.exists():
            libs.rename(old)
        partial.rename(libs)
        shutil.rmtree(old, ignore_errors=True)
        for archive in home.glob("*.jsa"):  # made from the replaced jars; unlinking is safe for running JVMs
            archive.unlink()
        stamp.write_text("\n".join([digest, *jars]) + "\n")
    return libs


# -- broker -------------------------------------------------------------------------------------

def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports free on host right now (all sockets held open until all are picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def random_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints (URL-safe base64 of 16 random bytes), without a JVM."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids these too: they read as command line options
            return cid


def _escape_properties(text: str, key: bool = False) -> str:
    """Escape for java.util.Properties.load(InputStream), which reads ISO-8859-1."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif (ch == " " and (key or i == 0)) or (key and ch in "=:#!"):
            out.append("\\" + ch)
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            units = ch.encode("utf-16-be")
            out.extend(f"\\u{units[j]:02x}{units[j + 1]:02x}" for j in range(0, len(units), 2))
        else:
            out.append(ch)
    return "".join(out)


def _die_with_parent() -> list[str]:
    """A prefix that SIGTERMs the broker when this process dies without stopping it (a test run
    killed by a timeout would otherwise leave a 512 MB JVM behind, in its own session). Linux
    sends the parent-death signal when the *thread* that forked exits, so only from the main thread."""
    setpriv = shutil.which("setpriv")  # util-linux; exec()s java, so the pid stays the broker's
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also when the caller's thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    t = threading.Thread(target=target, name="kafka-launcher-probe")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


async def _lists_itself(bootstrap: str, node_id: int, timeout_ms: int) -> bool:
    """True when the broker answers a Metadata request and lists node_id among its live brokers."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="churn-signals-kafka-launcher",
                                request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        info = await admin.describe_cluster()
        return any(b["node_id"] == node_id for b in info["brokers"])
    except (KafkaError, OSError):  # OSError covers TimeoutError
        return False
    finally:
        await admin.close()


class KafkaBroker:
    """One Apache Kafka process in KRaft combined mode (broker + controller) on loopback."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        node_id: int = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        controller_port: int | None = None,
        extra_config: Mapping[str, str] | None = None,
        listeners: Mapping[str, int | None] | None = None,
        cluster_id: str | None = None,
        format_args: Sequence[str] | None = None,
        scram_users: Sequence[tuple[str, str, str]] = (),
        jvm_opts: Sequence[str] = JVM_OPTS,
        class_data_sharing: bool = True,
    ) -> None:
        """
        listeners: client listener name -> port (None: a free one); default {"PLAINTEXT": port}.
            The first one is `bootstrap` and the inter-broker listener. A name that is a
            security protocol (SSL, SASL_SSL, ...) uses that protocol, any other PLAINTEXT;
            extra_config can override listener.security.protocol.map.
        extra_config: server.properties entries added last (they override the defaults).
        cluster_id: shared by all nodes of one cluster; random by default.
        format_args: the StorageTool format quorum option; default --standalone, or none when
            extra_config sets controller.quorum.voters (a static quorum).
        scram_users: (mechanism, name, password) credentials written into the metadata log when
            the storage is formatted (KRaft has no ZooKeeper to add them to later; every node of a
            quorum is formatted with the same ones). Mechanism: SCRAM-SHA-256 or SCRAM-SHA-512.
        class_data_sharing: start from a class-data archive of the broker's classes (AppCDS, about
            1 s less per start on 2 cores). The first cleanly stopped broker writes it into the jar
            cache; any JVM that cannot use it warns in broker.out and starts as without it.
        """
        if listeners is not None and port is not None:
            raise ValueError("give the client port either as port= or inside listeners=, not both")
        wanted = dict(listeners) if listeners is not None else {"PLAINTEXT": port}
        if not wanted or CONTROLLER in wanted:
            raise ValueError(f"listeners must name at least one client listener and not {CONTROLLER}")
        free = iter(free_ports(sum(p is None for p in wanted.values()) + (controller_port is None), host))
        self.host = host
        self.node_id = node_id
        self.ports: dict[str, int] = {name: p if p is not None else next(free) for name, p in wanted.items()}
        self.controller_port = controller_port if controller_port is not None else next(free)
        self.extra_config = dict(extra_config or {})
        self.cluster_id = cluster_id or random_cluster_id()
        self.format_args = list(format_args) if format_args is not None else None
        self.scram_users = list(scram_users)
        self.jvm_opts = list(jvm_opts)
        self.class_data_sharing = class_data_sharing
        self._archive_dump: tuple[Path, Path] | None = None  # (being written at exit, final name)
        self._archive_used: Path | None = None
        self._temporary = data_dir is None
        self._data_dir = None if data_dir is None else Path(data_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self._libs: Path | None = None
        self.timings: dict[str, float] = {}  # seconds of the last start: jars, format, ready
        self._launched = 0.0

    # -- addresses and files

    @property
    def data_dir(self) -> Path:
        """The given data dir, or a temporary one made on first use (stop() deletes it)."""
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="churn-kafka-"))
        return self._data_dir

    @property
    def listener(self) -> str:
        """The first client listener: bootstrap and inter-broker traffic."""
        return next(iter(self.ports))

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_for(self.listener)

    @property
    def port(self) -> int:
        return self.ports[self.listener]

    def bootstrap_for(self, listener: str) -> str:
        return f"{self.host}:{self.ports[listener]}"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_path(self) -> Path:
        """The broker's log4j log."""
        return self.data_dir / "server.log"

    @property
    def out_path(self) -> Path:
        """stdout and stderr of the JVM (crashes before logging starts, log4j status)."""
        return self.data_dir / "broker.out"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def config(self) -> dict[str, str]:
        """The server.properties entries start() writes."""
        client = ",".join(f"{name}://{self.host}:{port}" for name, port in self.ports.items())
        controller = f"{CONTROLLER}://{self.host}:{self.controller_port}"
        protocol_map = {name: name if name in PROTOCOLS else "PLAINTEXT" for name in self.ports}
        protocol_map[CONTROLLER] = "PLAINTEXT"
        cfg = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": f"{client},{controller}",
            "advertised.listeners": f"{client},{controller}",
            "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocol_map.items()),
            "inter.broker.listener.name": self.listener,
            "controller.listener.names": CONTROLLER,
            "log.dirs": str(self.log_dir),
            # a single node: internal topics with one replica
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # tests: a first consumer group joins at once
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted controller refuses the broker's new registration until
            # the old one's session expires (DUPLICATE_BROKER_REGISTRATION): 9 s by default, ~3 s here.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
        }
        if "controller.quorum.voters" in self.extra_config:  # static quorum: the two cannot be combined
            del cfg["controller.quorum.bootstrap.servers"]
        cfg.update(self.extra_config)
        return cfg

    def write_config(self) -> Path:
        lines = [f"# written by {Path(__file__).name}; rewritten at every start"]
        lines += [f"{_escape_properties(k, key=True)}={_escape_properties(v)}" for k, v in self.config().items()]
        self.properties_path.write_text("\n".join(lines) + "\n", encoding="latin-1")
        return self.properties_path

    def log_tail(self, n: int = LOG_TAIL) -> str:
        """The last lines of server.log, then of broker.out (where a JVM or log4j failure shows)."""
        parts = []
        for path in (self.log_path, self.out_path):
            with contextlib.suppress(OSError):
                if tail := _tail(path.read_text(errors="replace"), n):
                    parts.append(f"--- {path}\n{tail}")
        return "\n".join(parts) or f"(no output in {self.data_dir})"

    # -- lifecycle

    def _java(self, *args: str, jvm_opts: Sequence[str]) -> list[str]:
        # log4j's own shutdown hook would stop logging halfway through Kafka's shutdown (the rest then
        # goes nowhere but a warning in broker.out); the File appender flushes every line anyway.
        return [java_bin(), *jvm_opts, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-Dlog4j2.shutdownHookEnabled=false", f"-Dkafka.logs.dir={self.data_dir}",
                "-cp", str((self._libs or ensure_jars()) / "*"), *args]

    def _format(self) -> None:
        if self.format_args is not None:
            quorum = self.format_args
        else:
            quorum = [] if "controller.quorum.voters" in self.config() else ["--standalone"]
        scram = [arg for mechanism, name, password in self.scram_users
                 for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                         "-c", str(self.properties_path), *quorum, *scram, jvm_opts=TOOL_JVM_OPTS)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                           check=False, cwd=self.data_dir)
        if r.returncode != 0:
            raise CommandError(f"formatting the Kafka storage in {self.log_dir} failed "
                               f"(exit {r.returncode}):\n{_tail(r.stdout + r.stderr)}")

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Write the config, format on first use, start the JVM, wait until it answers Metadata."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> KafkaBroker:
        """start() without the wait: the JVM is running, not necessarily ready (the nodes of a
        quorum are launched together: none is ready before a majority of controllers runs)."""
        if self.running:
            raise CommandError(f"the Kafka broker on {self.bootstrap} is already running (pid {self.pid})")
        t0 = time.monotonic()
        self._libs = ensure_jars()
        java_bin()
        t1 = time.monotonic()
        for name, port in [*self.ports.items(), (CONTROLLER, self.controller_port)]:
            if port_open(self.host, port, 0.2):
                raise CommandError(f"cannot start Kafka: port {port} on {self.host} ({name} listener) is in use")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.write_config()
            if not (self.log_dir / "meta.properties").exists():
                self._format()
            t2 = time.monotonic()
            cmd = _die_with_parent() + self._java("kafka.Kafka", str(self.properties_path),
                                                  jvm_opts=[*self.jvm_opts, *self._cds_opts()])
            with open(self.out_path, "ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
                out.flush()
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=self.data_dir, start_new_session=True)
        except BaseException:
            self._failed()
            raise
        self.timings = {"jars": t1 - t0, "format": t2 - t1}
        self._launched = t2
        return self

    def wait_ready(self, timeout: float = 60.0) -> KafkaBroker:
        """Return once the launched broker lists itself in a Metadata response (fetching jars does not count)."""
        try:
            self._wait_ready(timeout, timeout - self.timings.get("format", 0.0))
        except BaseException:
            self._failed()
            raise
        self.timings["ready"] = time.monotonic() - self._launched
        return self

    def _failed(self) -> None:
        self._terminate(signal.SIGKILL, 10)
        if self._temporary:  # the error carries the log tail; a temporary dir would only be left behind
            self._remove_temporary()

    def _cds_opts(self) -> list[str]:
        """Use the class-data archive, or have this JVM write one when it exits after stop()."""
        self._archive_dump = self._archive_used = None
        if not self.class_data_sharing or self._libs is None:
            return []
        archive = self._libs.parent / f"broker-{_java()[1]}.jsa"
        if archive.is_file():
            self._archive_used = archive
            return [f"-XX:SharedArchiveFile={archive}"]
        partial = archive.with_name(f"{archive.name}.{os.getpid()}-{id(self):x}.partial")
        self._archive_dump = (partial, archive)
        return [f"-XX:ArchiveClassesAtExit={partial}"]

    def _probe_listener(self) -> str | None:
        protocols = dict(kv.split(":", 1) for kv in self.config()["listener.security.protocol.map"].split(","))
        return next((name for name in self.ports if protocols.get(name) == "PLAINTEXT"), None)

    def _wait_ready(self, timeout: float, left: float) -> None:
        assert self.proc is not None
        probe = self._probe_listener()
        deadline = time.monotonic() + max(left, 1.0)
        while True:
            rc = self.proc.poll()
            if rc is not None:
                note = ""
                if self._archive_used is not None and self._jvm_crashed():  # perhaps the archive: not again
                    self._archive_used.unlink(missing_ok=True)
                    note = f" (class-data archive {self._archive_used.name} removed; the next start goes without)"
                raise CommandError(f"Apache Kafka exited with code {rc} while starting{note}; last lines:\n"
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise CommandError(f"Apache Kafka did not answer on {self.bootstrap} within {timeout:.0f} s; "
                                   f"last lines:\n{self.log_tail()}")
            if probe is None:  # no plaintext listener to ask (e.g. SASL_SSL only): trust the log
                with contextlib.suppress(OSError):
                    if "Kafka Server started" in self.log_path.read_text(errors="replace"):
                        return
            elif port_open(self.host, self.ports[probe], 0.2) and _run_coroutine(
                    _lists_itself(self.bootstrap_for(probe), self.node_id, 3000)):
                return
            time.sleep(0.2)

    def _jvm_crashed(self) -> bool:
        """The JVM of the last start died of a fatal error (hs_err) rather than exiting."""
        with contextlib.suppress(OSError):
            last_start = self.out_path.read_text(errors="replace").rsplit("\n=== ", 1)[-1]
            return "A fatal error has been detected by the Java Runtime Environment" in last_start
        return False

    def _terminate(self, sig: int, timeout: float) -> None:
        proc = self.proc
        if proc is None:
            return
        clean = False
        if proc.poll() is None:  # not reaped yet: the process group is still ours to signal
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
                clean = sig == signal.SIGTERM
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.proc = None
        if self._archive_dump is not None:  # the JVM writes the archive while exiting on SIGTERM
            partial, archive = self._archive_dump
            self._archive_dump = None
            if clean and partial.is_file() and self._archive_loads(partial):
                partial.replace(archive)
            else:
                partial.unlink(missing_ok=True)

    def _archive_loads(self, archive: Path) -> bool:
        """A JVM maps the archive (a truncated one crashes the JVM with SIGBUS instead of being ignored)."""
        cmd = self._java("-version", jvm_opts=[f"-XX:SharedArchiveFile={archive}"])
        try:
            return subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                                  check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after timeout; removes a temporary data dir."""
        self._terminate(signal.SIGTERM, timeout)
        if self._temporary:
            self._remove_temporary()

    def _remove_temporary(self) -> None:
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None  # a later start() gets a fresh one

    def kill(self) -> None:
        """SIGKILL at once, like a crash or an OOM kill; the data dir stays for restart()."""
        self._terminate(signal.SIGKILL, 10)

    def restart(self, timeout: float = 60.0) -> KafkaBroker:
        """Stop if running, then start on the same data dir and the same ports."""
        self._terminate(signal.SIGTERM, 10)
        return self.start(timeout)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<KafkaBroker {self.bootstrap} node {self.node_id} {state} data={self._data_dir}>"


class KafkaCluster:
    """Several KafkaBroker nodes, each broker and controller, forming one KRaft cluster on loopback.

    ::

        with KafkaCluster(3) as cluster:          # temp data dirs, free loopback ports
            use(cluster.bootstrap)                # "127.0.0.1:A,127.0.0.1:B,127.0.0.1:C"
            cluster.nodes[1].kill()               # SIGKILL one node; the others carry on
            cluster.nodes[1].restart()            # same data dir and ports: it rejoins

    The controller quorum is static (``controller.quorum.voters`` lists every node), so
    the storage is formatted without ``--standalone`` and no node is ready before a
    majority of them runs: ``start()`` launches every JVM first, then waits for each.
    Internal topics (consumer offsets, transactions) get ``min(size, 3)`` replicas and
    ``min.insync.replicas`` one less, as a production cluster would have them.
    """

    #: What the fixture that starts a cluster records on it: start-up seconds, the broker kind.
    started_in: float = 0.0
    kind: str = "kafka"

    def __init__(self, size: int = 3, data_dir: Path | None = None, *, host: str = "127.0.0.1",
                 extra_config: Mapping[str, str] | None = None, jvm_opts: Sequence[str] = CLUSTER_JVM_OPTS) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="churn-kafka-"))
        ports = free_ports(2 * size, host)
        client, controller = ports[:size], ports[size:]
        voters = ",".join(f"{i + 1}@{host}:{controller[i]}" for i in range(size))
        replicas = min(size, 3)
        isr = str(max(1, replicas - 1))
        internal = {
            "controller.quorum.voters": voters,
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": isr,
        }
        cluster_id = random_cluster_id()
        self.nodes = [KafkaBroker(self.data_dir / f"node-{i + 1}", node_id=i + 1, host=host, port=client[i],
                                  controller_port=controller[i], cluster_id=cluster_id,
                                  extra_config={**internal, **(extra_config or {})}, jvm_opts=jvm_opts)
                      for i in range(size)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return next(n for n in self.nodes if n.node_id == node_id)

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every running node (controlled shutdown), SIGKILL after timeout; a temporary dir is removed."""
        for node in self.nodes:  # all at once: the last ones need no quorum to shut down
            if node.running and node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGTERM)
        for node in self.nodes:
            node.stop(timeout)
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tails(self, n: int = LOG_TAIL) -> str:
        return "\n".join(f"=== node {node.node_id}\n{node.log_tail(n)}" for node in self.nodes)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<KafkaCluster {self.bootstrap} {[n.pid if n.running else None for n in self.nodes]}>"


# -- command line -------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tests.kafka.launcher",
        description="Start a local Apache Kafka broker (KRaft, broker+controller in one process) on loopback, "
                    "print KAFKA_BOOTSTRAP_SERVERS=... and keep it up until Ctrl-C or SIGTERM. "
                    f"The jars come from Maven Central through tests/kafka/pom.xml and are cached in "
                    f"${CACHE_ENV} (default .cache/kafka).",
    )
    p.add_argument("--port", type=int, default=None, help="client (PLAINTEXT) port on 127.0.0.1 (default: a free one)")
    p.add_argument("--controller-port", type=int, default=None, help="KRaft controller port (default: a free one)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="keep topics here across runs (default: a temporary directory removed at exit)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the broker (default 90)")
    p.add_argument("--nodes", type=int, default=1, help="a cluster of this many nodes, each broker and controller "
                   "(e.g. 3: then try CHURN_REPLICATION_FACTOR=3 CHURN_MIN_INSYNC_REPLICAS=2; default 1)")
    p.add_argument("--fetch-only", action="store_true", help="only fetch the jars and print their directory")
    args = p.parse_args(argv)
    if args.nodes != 1 and (args.port or args.controller_port):
        p.error("--port and --controller-port are for a single node; a cluster takes free ports")
    try:
        if args.fetch_only:
            t0 = time.monotonic()
            libs = ensure_jars()
            print(f"Apache Kafka {kafka_version()} jars in {libs} ({time.monotonic() - t0:.1f} s)")
            return 0
        return _serve(args)
    except CommandError as exc:
        print(f"kafka: error: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    broker: KafkaBroker | KafkaCluster
    if args.nodes == 1:
        broker = KafkaBroker(args.data_dir, port=args.port, controller_port=args.controller_port)
    else:
        broker = KafkaCluster(args.nodes, args.data_dir)
    nodes = [broker] if isinstance(broker, KafkaBroker) else broker.nodes
    try:
        print(f"starting Apache Kafka {kafka_version()} ({args.nodes} node{'s' if args.nodes > 1 else ''}) in "
              f"{broker.data_dir} ...", file=sys.stderr, flush=True)
        broker.start(timeout=args.timeout)
        t = nodes[0].timings
        print(f"ready: jars {t['jars']:.1f} s, format {t['format']:.1f} s, start {t['ready']:.1f} s; "
              f"logs {', '.join(str(n.log_path) for n in nodes)}; Ctrl-C stops", file=sys.stderr, flush=True)
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
        while not stop.wait(0.5):
            if down := [n for n in nodes if not n.running]:
                raise CommandError(f"Apache Kafka node {down[0].node_id} exited unexpectedly; last lines:\n"
                                   f"{down[0].log_tail()}")
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Apache Kafka ...", file=sys.stderr, flush=True)
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
