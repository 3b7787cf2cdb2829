"""How every Kafka client of the project connects: one object, from the [kafka] table, KAFKA_* or flags.

    bootstrap_servers      host:port[,host:port]
    security_protocol      PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism         PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (required with SASL_*)
    sasl_username          (or sasl_username_file)
    sasl_password          (or sasl_password_file: a mounted Kubernetes secret)
    ssl_cafile             CA bundle that signed the brokers' certificates (default: the system's)
    ssl_certfile           client certificate chain for mutual TLS ...
    ssl_keyfile            ... and its key (or inside ssl_certfile)
    ssl_key_password       (or ssl_key_password_file) when that key is encrypted
    ssl_check_hostname     true: a broker's certificate must name the host dialled

The Faust app (`faust_credentials`), every aiokafka producer, consumer and admin
client (`client_kwargs`, `producer`, `consumer`, `admin`) and the readiness probe
(`ssl_context`) are built from it. When a client cannot start, `start` asks the
broker itself what went wrong (`diagnose`) and raises one line a person can act
on: a wrong password, an untrusted certificate, a listener that speaks another
protocol.

Must never: put a password into a log line, an error, a metric or a repr
(`Secret` prints as `***`); offer a password as a flag (argv is visible to every
local user in ps); fall back to PLAINTEXT when SASL or TLS settings are given
without the protocol that uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from schemas.errors import CommandError, ConfigError

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# OAUTHBEARER needs a token provider object in aiokafka (and Faust): no clean mapping from settings.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: settings that may also be read from a file (NAME_file): Kubernetes mounts secrets as files
FILE_SETTINGS = ("sasl_username", "sasl_password", "ssl_key_password")
#: the settings' names in the [kafka] table and, as KAFKA_<NAME> and --<name>, the environment and flags
NAMES = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
         "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password", "ssl_check_hostname",
         *(f"{n}_file" for n in FILE_SETTINGS))
#: secrets are never flags: a command line is visible to every local user
SECRET_NAMES = ("sasl_password", "ssl_key_password")

log = logging.getLogger("churn_signals")


class Secret(str):
    """A string that prints as *** (repr, str, format); `.value` is the secret itself."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"


def env_name(name: str) -> str:
    return f"KAFKA_{name.upper()}"


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them; shared by every client."""

    bootstrap: str | None = None                       # None: no broker chosen (see streams/live/worker.py)
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: Secret | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def with_bootstrap(self, bootstrap: str) -> KafkaConnection:
        return replace(self, bootstrap=bootstrap)

    def hosts(self) -> list[tuple[str, int]]:
        from streams.health import bootstrap_hosts

        return bootstrap_hosts(self.bootstrap or "")

    def describe(self) -> str:
        """For logs and errors: the address and how we authenticate, never a secret."""
        parts = [self.security_protocol]
        if self.sasl:
            parts.append(f"SASL {self.sasl_mechanism} as {self.sasl_username}")
        if self.tls:
            parts.append(f"CA {self.ssl_cafile or 'system'}")
            if self.ssl_certfile:
                parts.append(f"client certificate {self.ssl_certfile}")
            if not self.ssl_check_hostname:
                parts.append("host names not checked")
        return f"{self.bootstrap} ({', '.join(parts)})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (None without TLS); a bad file is a ConfigError naming the setting."""
        if not self.tls:
            return None
        return _ssl_context(self)

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for any aiokafka client."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.tls:
            kw["ssl_context"] = self.ssl_context()
        if self.sasl:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password.value if self.sasl_password else None)
        return kw

    def producer(self, **kw: Any) -> Any:
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(**self.client_kwargs(), **kw)

    def consumer(self, *topics: str, **kw: Any) -> Any:
        from aiokafka import AIOKafkaConsumer

        return AIOKafkaConsumer(*topics, **self.client_kwargs(), **kw)

    def admin(self, **kw: Any) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient

        return AIOKafkaAdminClient(**self.client_kwargs(), **kw)

    def faust_credentials(self) -> Any:
        """Faust's broker_credentials (None for PLAINTEXT): its consumers, producer and admin use them."""
        import faust

        if self.sasl:
            return faust.SASLCredentials(
                username=self.sasl_username, password=self.sasl_password.value if self.sasl_password else None,
                ssl_context=self.ssl_context(), mechanism=self.sasl_mechanism)
        if self.tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def as_env(self) -> dict[str, str]:
        """The same connection as KAFKA_* variables, for a child process (the demo's worker)."""
        env = {env_name("security_protocol"): self.security_protocol,
               env_name("ssl_check_hostname"): str(self.ssl_check_hostname).lower()}
        if self.bootstrap:
            env[env_name("bootstrap_servers")] = self.bootstrap
        for name in ("sasl_mechanism", "sasl_username", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                env[env_name(name)] = str(getattr(self, name))
        for name in SECRET_NAMES:
            secret = getattr(self, name)
            if secret is not None:
                env[env_name(name)] = secret.value
        return env


def _ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if conn.ssl_cafile:
        try:
            ctx.load_verify_locations(cafile=conn.ssl_cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ssl_cafile ({env_name('ssl_cafile')}): cannot load {conn.ssl_cafile}: "
                              f"{_reason(exc)}") from None
    if conn.ssl_certfile:
        password = conn.ssl_key_password.value if conn.ssl_key_password else None
        try:
            ctx.load_cert_chain(conn.ssl_certfile, conn.ssl_keyfile, password=password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ssl_certfile/ssl_keyfile ({env_name('ssl_certfile')}, {env_name('ssl_keyfile')}): "
                              f"cannot load the client certificate {conn.ssl_certfile}: {_reason(exc)}") from None
    if not conn.ssl_check_hostname:
        ctx.check_hostname = False  # the chain is still verified against the CA
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- from settings ----------------------------------------------------------------------------------

def load_connection(file: Mapping[str, Any], env: Mapping[str, str], flags: Mapping[str, Any]) -> KafkaConnection:
    """Precedence per setting: flag > KAFKA_* > [kafka] table > default; NAME_file reads NAME from a file."""
    unknown = set(file) - set(NAMES)
    if unknown:
        raise ConfigError(f"[kafka]: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(NAMES)}")
    sources = [(flags.get, "flags"), (lambda n: env.get(env_name(n)) or None, "environment"), (file.get, "[kafka]")]
    raw: dict[str, Any] = {}
    for name in NAMES:
        if name.endswith("_file"):
            continue
        for get, where in sources:
            # NAME and NAME_file are one setting: the first source that gives either wins
            value, path = get(name), (get(f"{name}_file") if name in FILE_SETTINGS else None)
            if value is not None and path is not None:
                raise ConfigError(f"{name}: set {env_name(name)} or {env_name(name)}_FILE, not both ({where})")
            if path is not None:
                raw[name] = _read_secret_file(name, str(path))
                break
            if value is not None:
                raw[name] = value
                break
    protocol = str(raw.get("security_protocol", "PLAINTEXT")).strip().upper()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"security_protocol ({env_name('security_protocol')}): expected one of "
                          f"{', '.join(PROTOCOLS)}, got {protocol!r}")
    mechanism = raw.get("sasl_mechanism")
    mechanism = str(mechanism).strip().upper() if mechanism is not None else None
    conn = KafkaConnection(
        bootstrap=_bootstrap(raw.get("bootstrap_servers")),
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=_str(raw.get("sasl_username")),
        sasl_password=_secret(raw.get("sasl_password")),
        ssl_cafile=_path(raw, "ssl_cafile"),
        ssl_certfile=_path(raw, "ssl_certfile"),
        ssl_keyfile=_path(raw, "ssl_keyfile"),
        ssl_key_password=_secret(raw.get("ssl_key_password")),
        ssl_check_hostname=parse_bool(raw.get("ssl_check_hostname", True),
                                      f"ssl_check_hostname ({env_name('ssl_check_hostname')})"),
    )
    _check(conn)
    return conn


def _check(c: KafkaConnection) -> None:
    proto = f"{env_name('security_protocol')}={c.security_protocol}"
    if c.sasl:
        if c.sasl_mechanism not in MECHANISMS:
            got = f", got {c.sasl_mechanism!r}" if c.sasl_mechanism else ""
            raise ConfigError(f"sasl_mechanism ({env_name('sasl_mechanism')}): {c.security_protocol} needs one of "
                              f"{', '.join(MECHANISMS)}{got}")
        if not c.sasl_username or c.sasl_password is None:
            raise ConfigError(f"{c.security_protocol} needs a user name and a password: set "
                              f"{env_name('sasl_username')} and {env_name('sasl_password')} (or their _FILE forms)")
    else:
        given = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(c, n) is not None]
        if given:  # never fall back to an unauthenticated connection the user did not ask for
            raise ConfigError(f"{', '.join(env_name(n) for n in given)} set but {proto}: set it to SASL_SSL "
                              "(or SASL_PLAINTEXT) to authenticate")
    if not c.tls:
        given = [n for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
                 if getattr(c, n) is not None]
        if given:
            raise ConfigError(f"{', '.join(env_name(n) for n in given)} set but {proto}: set it to SSL or SASL_SSL "
                              "to use TLS")
    if c.ssl_keyfile and not c.ssl_certfile:
        raise ConfigError(f"{env_name('ssl_keyfile')} needs {env_name('ssl_certfile')}, the certificate it belongs to")
    if c.bootstrap is not None and not c.hosts():
        raise ConfigError(f"bootstrap_servers ({env_name('bootstrap_servers')}): expected host:port[,host:port], "
                          f"got {c.bootstrap!r}")
    c.ssl_context()  # unreadable or malformed certificate files fail now, naming the setting


def _bootstrap(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _secret(value: Any) -> Secret | None:
    return None if value is None else Secret(str(value))


def _path(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or not str(value).strip():
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name} ({env_name(name)}): {path} is not a readable file")
    return str(path)


def parse_bool(value: Any, setting: str) -> bool:
    """A boolean setting from TOML or the environment (true/false, 1/0, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{setting}: expected true or false, got {value!r}")


def _read_secret_file(name: str, path: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}_file ({env_name(name)}_FILE): cannot read {path}: {_reason(exc)}") from None
    return text.rstrip("\r\n")  # `echo secret > file` and Kubernetes secrets differ only in this


# -- starting clients, and saying why one could not start --------------------------------------------

@contextlib.contextmanager
def quiet_connection_errors() -> Iterator[None]:
    """aiokafka logs each failed connection attempt; we report one clear line instead."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def start(conn: KafkaConnection, client: Any, timeout: float = 15.0,
                close: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Start an aiokafka client; when it cannot, close it and raise the one line `diagnose` finds."""
    from aiokafka.errors import KafkaError

    try:
        with quiet_connection_errors():
            await asyncio.wait_for(client.start(), timeout)
    except (TimeoutError, OSError, KafkaError) as exc:
        with contextlib.suppress(Exception):
            await (close or client.stop)()
        raise CommandError(await diagnose(conn, min(timeout, 10.0)) or
                           f"cannot reach the Kafka broker at {conn.describe()} ({type(exc).__name__}); "
                           f"check {env_name('bootstrap_servers')}") from None


async def diagnose(conn: KafkaConnection, timeout: float = 10.0) -> str | None:
    """Connect to each bootstrap server as the clients would; the first clear reason it fails, or None."""
    reasons = []
    for host, port in conn.hosts():
        with quiet_connection_errors():
            reason = await _diagnose_one(conn, host, port, timeout)
        if reason is None:
            return None  # this one works: the failure was elsewhere (a timeout, a later broker)
        reasons.append(reason)
    return reasons[0] if reasons else None


async def _diagnose_one(conn: KafkaConnection, host: str, port: int, timeout: float) -> str | None:
    from aiokafka import errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    where = f"{host}:{port}"
    proto = conn.security_protocol
    kw = conn.client_kwargs()
    kw.pop("bootstrap_servers")
    client = None
    stage = "connect"
    try:
        client = await asyncio.wait_for(
            create_conn(host, port, client_id="churn-signals-diagnose", request_timeout_ms=int(timeout * 1000), **kw),
            timeout)
        stage = "metadata"
        await asyncio.wait_for(client.send(MetadataRequest([])), timeout)
        return None
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return (f"TLS: the certificate of {where} does not name {host}; connect by a name it lists "
                    f"or set {env_name('ssl_check_hostname')}=false")
        return (f"TLS: certificate verify failed for {where} ({exc.verify_message}); set "
                f"{env_name('ssl_cafile')} to the CA that signed the broker's certificate")
    except errors.SaslAuthenticationFailed:
        return f"authentication failed for user {conn.sasl_username} (SASL {conn.sasl_mechanism}) at {where}"
    except errors.UnsupportedSaslMechanismError as exc:
        offered = str(exc).rpartition("Enabled mechanisms are:")[2].strip() or "none"
        return (f"{where} does not offer SASL {conn.sasl_mechanism} (it offers {offered}); "
                f"set {env_name('sasl_mechanism')}")
    except errors.IllegalSaslStateError:
        return (f"{where} is not a SASL listener but {env_name('security_protocol')}={proto}; "
                f"use {'SSL' if conn.tls else 'PLAINTEXT'}, or the cluster's SASL listener")
    except ssl.SSLError as exc:
        return (f"TLS handshake with {where} failed ({_reason(exc)}): it does not seem to be a TLS listener; "
                f"check {env_name('security_protocol')} (now {proto})")
    except (ConnectionRefusedError, TimeoutError, OSError, errors.KafkaError) as exc:
        if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and stage == "connect"
                                                       and not isinstance(exc, ConnectionResetError)):
            return f"cannot reach the Kafka broker at {where} ({_reason(exc)}); check {env_name('bootstrap_servers')}"
        if not conn.tls and stage == "connect" and await _speaks_tls(host, port, timeout):
            return (f"{where} is a TLS listener but {env_name('security_protocol')}={proto}; "
                    f"set it to {'SASL_SSL' if conn.sasl else 'SSL or SASL_SSL'}")
        if conn.tls and stage == "connect" and isinstance(exc, errors.KafkaConnectionError):
            # TLS 1.3: the server checks the client's certificate after the handshake, then hangs up
            if conn.ssl_certfile:
                return (f"{where} closed the connection after the TLS handshake: it did not accept the client "
                        f"certificate {conn.ssl_certfile} ({env_name('ssl_certfile')})")
            return (f"{where} closed the connection after the TLS handshake: the listener requires a client "
                    f"certificate (mutual TLS); set {env_name('ssl_certfile')} and {env_name('ssl_keyfile')}")
        if conn.tls and stage == "connect":
            return (f"TLS handshake with {where} failed ({type(exc).__name__}): it does not seem to be a TLS "
                    f"listener; check {env_name('security_protocol')} (now {proto})")
        if not conn.sasl and stage == "metadata":
            return (f"{where} closed the connection after the first request: the listener requires SASL "
                    f"authentication; set {env_name('security_protocol')}=SASL_SSL (or SASL_PLAINTEXT) and "
                    f"{env_name('sasl_mechanism')}, {env_name('sasl_username')}, {env_name('sasl_password')}")
        return None
    finally:
        if client is not None:
            client.close()


async def _speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Does the port complete a TLS handshake (certificate not checked: only the protocol is asked)?"""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return True
