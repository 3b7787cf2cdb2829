"""One Kafka connection config for every client: sources, precedence, checks, and secrets kept out of sight."""

from __future__ import annotations

import logging
import ssl

import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from schemas.errors import ConfigError
from streams.connection import KafkaConnection, Secret, load_connection
from streams.settings import load_settings, unknown_variables
from tests.unit.test_cli import _assert_one_line_error, cli

PASSWORD = "hunter2-Very-Secret"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def _scram(**more):
    return {"KAFKA_BOOTSTRAP_SERVERS": "k1:9093,k2:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "churn", "KAFKA_SASL_PASSWORD": PASSWORD,
            **more}


def test_flag_beats_environment_beats_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[kafka]\nbootstrap_servers = "file:1"\nsecurity_protocol = "SASL_SSL"\n'
                    'sasl_mechanism = "PLAIN"\nsasl_username = "from-file"\nsasl_password = "p"\n')
    env = {"CHURN_CONFIG": str(toml), "KAFKA_BOOTSTRAP_SERVERS": "env:2", "KAFKA_SASL_USERNAME": "from-env"}
    s = load_settings(env=env)
    assert (s.bootstrap, s.kafka.sasl_username, s.kafka.sasl_mechanism) == ("env:2", "from-env", "PLAIN")
    s = load_settings(env=env, kafka={"bootstrap_servers": "flag:3", "sasl_username": "from-flag"})
    assert (s.bootstrap, s.kafka.sasl_username) == ("flag:3", "from-flag")


def test_secrets_from_files_as_kubernetes_mounts_them(tmp_path):
    pw, user = tmp_path / "password", tmp_path / "username"
    pw.write_text(PASSWORD + "\n")  # `echo` adds a newline; a Kubernetes secret may not
    user.write_text("churn")
    env = _scram(KAFKA_SASL_PASSWORD_FILE=str(pw), KAFKA_SASL_USERNAME_FILE=str(user))
    del env["KAFKA_SASL_PASSWORD"], env["KAFKA_SASL_USERNAME"]
    conn = load_settings(env=env).kafka
    assert conn.sasl_password is not None
    assert conn.sasl_password.value == PASSWORD
    assert conn.sasl_username == "churn"
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both"):
        load_settings(env=_scram(KAFKA_SASL_PASSWORD_FILE=str(pw)))
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(env={**env, "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "absent")})


@pytest.mark.parametrize(("env", "fragment"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    (_scram(KAFKA_SASL_MECHANISM=""), "SASL_SSL needs one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    (_scram(KAFKA_SASL_MECHANISM="GSSAPI"), "got 'GSSAPI'"),
    (_scram(KAFKA_SASL_PASSWORD=""), "needs a user name and a password"),
    # credentials without a SASL protocol would silently connect unauthenticated
    ({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "set it to SSL or SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "is not a readable file"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "expected true or false"),
    ({"KAFKA_BOOTSTRAP_SERVERS": "kafka"}, "expected host:port"),
])
def test_bad_connection_settings_name_the_setting(env, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as info:
        load_settings(env=env)
    assert PASSWORD not in str(info.value)


def test_a_malformed_ca_file_fails_at_start_naming_the_setting(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"ssl_cafile \(KAFKA_SSL_CAFILE\): cannot load"):
        load_settings(env=_scram(KAFKA_SSL_CAFILE=str(bad)))


def test_tls_checks_the_broker_certificate_and_its_host_name_by_default(ca_file):
    ctx = load_settings(env=_scram(KAFKA_SSL_CAFILE=ca_file)).kafka.ssl_context()
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    loose = load_settings(env=_scram(KAFKA_SSL_CAFILE=ca_file, KAFKA_SSL_CHECK_HOSTNAME="false")).kafka
    ctx = loose.ssl_context()
    assert ctx is not None
    assert ctx.check_hostname is False
    assert ctx.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified
    assert load_settings(env={}).kafka.ssl_context() is None


def test_every_client_kind_gets_the_same_credentials(ca_file):
    conn = load_settings(env=_scram(KAFKA_SSL_CAFILE=ca_file)).kafka
    kw = conn.client_kwargs()
    assert kw["bootstrap_servers"] == "k1:9093,k2:9093"
    assert (kw["security_protocol"], kw["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("churn", PASSWORD)
    assert isinstance(kw["ssl_context"], ssl.SSLContext)
    # Faust's own consumers, producer and admin take theirs through this mapping
    faust_kw = credentials_to_aiokafka_auth(conn.faust_credentials())
    assert {k: faust_kw[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                     "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "churn",
        "sasl_plain_password": PASSWORD}
    assert isinstance(faust_kw["ssl_context"], ssl.SSLContext)
    tls_only = load_connection({}, {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": ca_file}, {})
    assert credentials_to_aiokafka_auth(tls_only.faust_credentials())["security_protocol"] == "SSL"
    assert KafkaConnection("k:1").faust_credentials() is None
    assert KafkaConnection("k:1").client_kwargs() == {"bootstrap_servers": "k:1", "security_protocol": "PLAINTEXT"}


def test_the_faust_app_is_built_with_the_connection(ca_file):
    from streams.live.app import faust_app

    settings = load_settings(env=_scram(KAFKA_SSL_CAFILE=ca_file))
    creds = faust_app(settings).conf.broker_credentials
    assert credentials_to_aiokafka_auth(creds)["sasl_plain_username"] == "churn"


def test_passwords_never_show_in_reprs_descriptions_or_logs(ca_file, caplog):
    settings = load_settings(env=_scram(KAFKA_SSL_CAFILE=ca_file))
    conn = settings.kafka
    shown = [repr(settings), str(settings), repr(conn), conn.describe(), f"{conn.sasl_password}",
             str(conn.sasl_password), repr(conn.sasl_password), "%s" % (conn.sasl_password,),  # noqa: UP031 - the %-format path too
             repr(conn.faust_credentials())]
    for text in shown:
        assert PASSWORD not in text, text
    assert "SASL SCRAM-SHA-512 as churn" in conn.describe()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("churn_signals").info("Kafka: %s %s", conn, conn.sasl_password)
    assert PASSWORD not in caplog.text
    assert isinstance(conn.sasl_password, Secret)


def test_unknown_variables_are_reported_with_the_likely_name():
    lines = unknown_variables({"CHURN_PARTITONS": "8", "KAFKA_BOOTSTRAP_SERVER": "k:1", "CHURN_WEB_PORT": "1",
                               "CHURN_DETECTOR_X": "1", "KAFKA_PORT": "tcp://10.0.0.1:9092", "CHURN_ZZZ": "1",
                               "KAFKA_SSL_CA_FILE": "/ca.pem"})
    assert lines == [
        "unknown setting CHURN_PARTITONS ignored; did you mean CHURN_PARTITIONS?",
        "unknown setting CHURN_ZZZ ignored",
        "unknown setting KAFKA_BOOTSTRAP_SERVER ignored; did you mean KAFKA_BOOTSTRAP_SERVERS?",
        "unknown setting KAFKA_SSL_CA_FILE ignored; did you mean KAFKA_SSL_CAFILE?",
    ]  # CHURN_DETECTOR_* typos are refused by the detector config; KAFKA_PORT is Kubernetes'


def test_a_worker_without_a_broker_says_how_to_choose_one():
    _assert_one_line_error(cli("worker"), "no Kafka chosen", "KAFKA_BOOTSTRAP_SERVERS", "--embedded-broker")
    r = cli("worker", "--embedded-broker", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    _assert_one_line_error(r, "--embedded-broker starts a broker of its own", "drop one of the two")


def test_typos_are_reported_at_start_up():
    r = cli("worker", env={"CHURN_PARTITONS": "8"})
    assert r.returncode == 2
    assert "warning: unknown setting CHURN_PARTITONS ignored; did you mean CHURN_PARTITIONS?" in r.stderr


def test_version():
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("churn-signals ")
    assert "detector " in r.stdout


def test_connection_flags_and_password_files(tmp_path, ca_file):
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    r = cli("produce", "x.jsonl", "--bootstrap-servers", "127.0.0.1:9", "--security-protocol", "sasl_ssl",
            "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "u", "--ssl-cafile", ca_file)
    _assert_one_line_error(r, "needs a user name and a password")
    r = cli("produce", "--help")
    assert "--sasl-password-file" in r.stdout
    assert "--sasl-password " not in r.stdout  # a password is never a flag: argv is public


def test_a_password_from_a_higher_source_wins_over_a_file_from_a_lower_one(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("from-file")
    toml = tmp_path / "c.toml"
    toml.write_text(f'[kafka]\nsasl_password_file = "{pw}"\n')
    conn = load_settings(env={**_scram(), "CHURN_CONFIG": str(toml)}).kafka
    assert conn.sasl_password is not None
    assert conn.sasl_password.value == PASSWORD
    env = {k: v for k, v in _scram().items() if k != "KAFKA_SASL_PASSWORD"}
    conn = load_settings(env=env, kafka={"sasl_password_file": str(pw)}).kafka
    assert conn.sasl_password is not None
    assert conn.sasl_password.value == "from-file"
