"""A secured Apache Kafka broker for the tests: SASL_SSL (SCRAM) and mTLS listeners, made on the spot.

The certificates come from `trustme` (an in-process CA: no openssl command line,
whose flags differ between versions, and a second, untrusted CA is one call):
the broker's certificate names 127.0.0.1 and localhost; a client certificate
for mutual TLS; a CA that signed nothing the broker shows, for the "untrusted
certificate" case. The SCRAM users are written into the metadata log when the
storage is formatted (KRaft has nowhere else to keep them before the broker runs).

Listeners (all on loopback, free ports):

    PLAINTEXT   inter-broker traffic, the launcher's readiness probe and the tests' own
                verifying reads (independent of the code under test)
    SASL_SSL    SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN over TLS: what the clients under test use
    SSL         TLS with a required client certificate (mTLS)

The controller listener stays PLAINTEXT on loopback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

from tests.kafka.launcher import KafkaBroker

USER = "churn-worker"
PASSWORD = "s3cret-Pa55-for-the-tests"   # a string no log line or error may ever contain
PLAIN_USER, PLAIN_PASSWORD = "plain-user", "plain-Pa55-never-shown"
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True)
class Certificates:
    ca: Path            # the CA that signed the broker's and the client's certificates
    other_ca: Path      # a CA that signed nothing the broker shows
    broker: Path        # the broker's key and certificate chain (PEM, PKCS#8 key)
    client_cert: Path
    client_key: Path


def _pkcs8(key_pem: bytes) -> bytes:
    """Kafka's PEM key store reads PKCS#8 keys only; trustme writes the traditional form."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certificates(where: Path) -> Certificates:
    where.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("churn-signals-client")
    certs = Certificates(where / "ca.pem", where / "other-ca.pem", where / "broker.pem",
                         where / "client.pem", where / "client.key")
    ca.cert_pem.write_to_path(str(certs.ca))
    other.cert_pem.write_to_path(str(certs.other_ca))
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    certs.broker.write_bytes(_pkcs8(server.private_key_pem.bytes()) + chain)
    certs.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    certs.client_key.write_bytes(_pkcs8(client.private_key_pem.bytes()))
    return certs


def secured_config(certs: Certificates) -> dict[str, str]:
    """server.properties entries for the SASL_SSL and SSL (mTLS) listeners."""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
             f'user_{PLAIN_USER}="{PLAIN_PASSWORD}";')
    cfg = {
        "sasl.enabled.mechanisms": ",".join(MECHANISMS),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
        "listener.name.ssl.ssl.client.auth": "required",
        "listener.name.ssl.ssl.truststore.type": "PEM",
        "listener.name.ssl.ssl.truststore.location": str(certs.ca),
    }
    for listener in ("sasl_ssl", "ssl"):
        cfg[f"listener.name.{listener}.ssl.keystore.type"] = "PEM"
        cfg[f"listener.name.{listener}.ssl.keystore.location"] = str(certs.broker)
    return cfg


def secured_broker(where: Path, extra_config: dict[str, str] | None = None) -> tuple[KafkaBroker, Certificates]:
    """A started broker with PLAINTEXT, SASL_SSL and SSL listeners; SCRAM users added at format time."""
    certs = make_certificates(where / "tls")
    broker = KafkaBroker(
        where / "kafka",
        listeners={"PLAINTEXT": None, "SASL_SSL": None, "SSL": None},
        extra_config={**secured_config(certs), **(extra_config or {})},
        scram_users=[(m, USER, PASSWORD) for m in ("SCRAM-SHA-512", "SCRAM-SHA-256")],
    )
    return broker.start(), certs
