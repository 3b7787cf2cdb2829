"""The `churn-signals` command line.

Every failure a user can cause (bad flag, bad config, unreachable broker,
wrong password, untrusted certificate, unreadable file) ends in one line on
stderr and a non-zero exit code, never a traceback. Variables named like a
setting that no setting reads (typos) are reported at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from schemas.decode import check_generated_fresh, to_epoch_ms
from schemas.errors import ChurnSignalsError, CommandError
from schemas.validator import parse_rfc3339
from streams.connection import MECHANISMS, PROTOCOLS
from streams.corebuild import check_fresh
from streams.settings import Settings, load_settings, unknown_variables

PROG = "churn-signals"

ENV_HELP = """environment:
  KAFKA_BOOTSTRAP_SERVERS   Kafka bootstrap servers (host:port,...)
  KAFKA_SECURITY_PROTOCOL   PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; KAFKA_SASL_*, KAFKA_SSL_*: how to
                            authenticate (the Kafka connection flags, as variables; passwords also _FILE)
  CHURN_CONFIG              TOML file with [kafka], [worker] and [detector] tables
  CHURN_<SETTING>           worker setting, e.g. CHURN_PARTITIONS=8, CHURN_TOPIC_ORDERS=orders-eu
  CHURN_DETECTOR_<NAME>     detector setting, e.g. CHURN_DETECTOR_SILENCE_WINDOWS=grocery=5d/10d
See the README's configuration reference for every setting."""

#: the commands that connect to Kafka take the connection flags
KAFKA_COMMANDS = ("worker", "demo", "produce", "replay", "shadow", "explain", "topics")
EMBEDDED_PORT = 9092


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from detectors.config import DETECTOR_VERSION
    from streams.corebuild import kind

    try:
        package = version("churn-signals")
    except PackageNotFoundError:  # a source tree without install
        package = "unknown"
    return f"{PROG} {package} (detector {DETECTOR_VERSION}, core {kind()})"


def add_kafka_flags(p: argparse.ArgumentParser) -> None:
    """The [kafka] settings as flags (over KAFKA_* and the file). Secrets only as files: argv is public."""
    g = p.add_argument_group("Kafka connection (flag > KAFKA_* variable > [kafka] in CHURN_CONFIG)")
    g.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]", help="KAFKA_BOOTSTRAP_SERVERS")
    g.add_argument("--security-protocol", choices=PROTOCOLS, type=str.upper,
                   help="KAFKA_SECURITY_PROTOCOL (default PLAINTEXT)")
    g.add_argument("--sasl-mechanism", choices=MECHANISMS, type=str.upper, help="KAFKA_SASL_MECHANISM")
    g.add_argument("--sasl-username", metavar="NAME", help="KAFKA_SASL_USERNAME")
    g.add_argument("--sasl-username-file", metavar="FILE", help="KAFKA_SASL_USERNAME_FILE")
    g.add_argument("--sasl-password-file", metavar="FILE", help="KAFKA_SASL_PASSWORD_FILE (the password itself: "
                   "KAFKA_SASL_PASSWORD, never a flag)")
    g.add_argument("--ssl-cafile", metavar="FILE", help="KAFKA_SSL_CAFILE: CA certificates that signed the "
                   "brokers' certificates (default: the system's)")
    g.add_argument("--ssl-certfile", metavar="FILE", help="KAFKA_SSL_CERTFILE: client certificate for mutual TLS")
    g.add_argument("--ssl-keyfile", metavar="FILE", help="KAFKA_SSL_KEYFILE: its private key")
    g.add_argument("--ssl-key-password-file", metavar="FILE", help="KAFKA_SSL_KEY_PASSWORD_FILE")
    g.add_argument("--ssl-check-hostname", action=argparse.BooleanOptionalAction, default=None,
                   help="KAFKA_SSL_CHECK_HOSTNAME: a broker's certificate must name the host dialled (default on)")


def kafka_flags(args: argparse.Namespace) -> dict[str, Any]:
    from streams.connection import NAMES

    return {name: getattr(args, name) for name in NAMES if getattr(args, name, None) is not None}


def _parse_time(value: str) -> int:
    dt = parse_rfc3339(value)
    if dt is None:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time with offset, e.g. 2026-01-31T00:00:00Z, got {value!r}"
        )
    return to_epoch_ms(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Event-streaming churn signal detector: turns order, delivery and courier-rating "
        "events into churn trigger events.",
        epilog=ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_, description=description, epilog=ENV_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in KAFKA_COMMANDS:
            add_kafka_flags(parser)
        return parser

    w = add("worker", "run the live detector", "Run the live detector worker on the Kafka cluster of "
            "KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers), or with --embedded-broker on a throwaway "
            "in-memory broker it starts on loopback. One of the two must be chosen.")
    w.add_argument("--embedded-broker", nargs="?", type=int, const=EMBEDDED_PORT, metavar="PORT",
                   help=f"start the embedded broker (memory only: trying things out, never production) on "
                   f"127.0.0.1:PORT (default {EMBEDDED_PORT}) and work on it")
    w.add_argument("--web-port", type=int, help="port of /metrics and /healthz (default 6066)")
    w.add_argument("--partitions", type=int, help="partitions of topics it creates (default 4)")
    w.add_argument("--app-id", help="consumer group and changelog prefix (default churn-signals)")
    w.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level (default info)")
    w.add_argument("--params", metavar="PARAMS.json", help="cadence model and RFM cut points from 'churn-signals "
                   "fit': silence deadlines follow each customer's own rhythm (default: category windows only)")

    tp = add("topics", "print (or create) every topic the worker needs, for the cluster's owner",
             "Print the topic plan of this configuration: every topic the worker reads or writes, Faust's "
             "table changelog and leader topic included, with partitions, replication factor and configs "
             "(CHURN_REPLICATION_FACTOR, CHURN_MIN_INSYNC_REPLICAS, CHURN_PARTITIONS, topic names, app id). "
             "Hand it to whoever owns the cluster when the worker may not create topics "
             "(CHURN_CREATE_TOPICS=false). --apply creates the missing ones on KAFKA_BOOTSTRAP_SERVERS.")
    tp.add_argument("--format", choices=["table", "sh", "json"], default="table",
                    help="table (default), sh: a kafka-topics.sh script, json: for tools")
    tp.add_argument("--apply", action="store_true", help="create the missing topics now (existing input "
                    "topics' partition count wins, as at worker start-up) and say which were there")
    tp.add_argument("--partitions", type=int, help="partitions of the co-partitioned topics (CHURN_PARTITIONS)")
    tp.add_argument("--app-id", help="the worker's app id: names the changelog and leader topics (CHURN_APP_ID)")
    tp.add_argument("--replication-factor", type=int, help="CHURN_REPLICATION_FACTOR (default 1; production: 3)")
    tp.add_argument("--min-insync-replicas", type=int, help="CHURN_MIN_INSYNC_REPLICAS (default: the cluster's; "
                    "production: 2)")

    f = add("fit", "fit the personal cadence models (BG/NBD, Pareto/NBD) and RFM cut points",
            "Estimate the BG/NBD population parameters r, alpha, a, b and the Pareto/NBD ones r, alpha, s, beta "
            "by maximum likelihood from the orders in a JSON Lines log up to --until (on the UTC day grid: orders "
            "on one calendar day count as one transaction), plus RFM cut points, and write them as JSON for "
            "worker/replay --params. Refuses (exit 2, nothing written) when there are too few customers or "
            "BG/NBD does not converge; warns when Pareto/NBD does not converge (the file goes without it).")
    f.add_argument("file", help="JSON Lines event log (.gz accepted); only valid order events are used")
    f.add_argument("--until", type=_parse_time, required=True, metavar="TIME",
                   help="end of the calibration period (RFC 3339); later orders are ignored")
    f.add_argument("--out", required=True, metavar="PARAMS.json", help="where to write the parameters")
    f.add_argument("--time-unit", choices=["hours", "days", "weeks"], default="weeks",
                   help="time unit of the model (alpha is in it; default weeks, as in the paper)")
    f.add_argument("--min-customers", type=int, default=300, metavar="N",
                   help="refuse to fit fewer customers than this (default 300; below it estimates are unreliable)")

    b = add("broker", "run the embedded Kafka-compatible broker",
            "Run the embedded Kafka-compatible broker (Tansu) on loopback until interrupted. "
            "Memory only: for development, demos and tests, not production.")
    b.add_argument("--port", type=int, default=9092, help="listen port on 127.0.0.1 (default 9092)")

    d = add("demo", "broker + worker + sample traffic, triggers printed live",
            "Start the embedded broker (unless a bootstrap server is given: then that cluster) and a worker, "
            "publish a realistic 120-day history ending now, keep sending live events and print every trigger.")
    d.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    d.add_argument("--customers", type=int, default=60, help="sample customers (default 60)")
    d.add_argument("--rate", type=float, default=1.0, help="live orders per second (default 1)")
    d.add_argument("--show-history", action="store_true", help="print every trigger of the sample history "
                   "too, not just a tally")

    pr = add("produce", "publish a JSON Lines log to the input topics",
             "Publish a JSON Lines event log (.gz accepted, - for stdin) to the input topics, each event to "
             "the topic of its type, key = customer_id, timestamp = occurred_at. Needs KAFKA_BOOTSTRAP_SERVERS.")
    pr.add_argument("file", help="JSON Lines file")
    pr.add_argument("--rate", type=float, help="at most this many events per second (default: as fast as the "
                    "broker takes them)")
    pr.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                    help="progress bar on stderr: auto = only on a terminal (default)")

    # replay, shadow, diff, explain, report: the data-engineering commands (streams/offline/dataeng.py)
    from streams.offline import dataeng

    dataeng.add_commands(add, _parse_time)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_fresh()
        check_generated_fresh()
        if args.command != "broker":
            for line in unknown_variables():
                print(f"{PROG} {args.command}: warning: {line}", file=sys.stderr, flush=True)
        return _dispatch(args)
    except ChurnSignalsError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "broker":
        return _broker(args.port)
    overrides: dict[str, Any] = {}
    if args.command == "worker":
        overrides = {"web_port": args.web_port, "partitions": args.partitions, "app_id": args.app_id,
                     "log_level": args.log_level}
    if args.command == "topics":
        overrides = {"partitions": args.partitions, "app_id": args.app_id,
                     "replication_factor": args.replication_factor, "min_insync_replicas": args.min_insync_replicas}
    settings = load_settings(overrides=overrides, kafka=kafka_flags(args))
    if args.command == "fit":
        from streams.offline.fit import run_fit

        return run_fit(args.file, args.until, args.out, args.time_unit, args.min_customers)
    if getattr(args, "params", None):
        from streams.offline.fit import with_params

        settings = with_params(settings, args.params)
    if args.command == "worker":
        from streams.live.worker import run_worker

        return run_worker(settings, args.embedded_broker)
    if args.command == "demo":
        from streams.dev.demo import run_demo

        return run_demo(settings, args.duration, args.customers, args.rate, args.show_history)
    if args.command == "topics":
        return _topics(settings, args.format, args.apply)
    if args.command == "produce":
        return _produce(settings, args.file, args.rate, args.progress)
    if args.command in ("replay", "shadow", "diff", "explain", "report"):
        from streams.offline import dataeng

        return dataeng.run(settings, args)
    raise CommandError(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it


def _broker(port: int) -> int:
    import signal
    import threading

    from streams.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=port).start()
    print(f"embedded broker listening on {broker.bootstrap} (Ctrl-C to stop)", flush=True)
    print(f"use it with: export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if broker.proc is None or broker.proc.poll() is not None:
                raise CommandError("the embedded broker exited unexpectedly")
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _topics(settings: Settings, fmt: str, apply: bool) -> int:
    from streams.topics import apply_plan, render, topic_plan

    if not apply:
        sys.stdout.write(render(topic_plan(settings), fmt, settings))
        return 0
    if not settings.bootstrap:
        raise CommandError("topics --apply needs a broker: set KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers)")
    plan, created, existed = asyncio.run(apply_plan(settings))
    sys.stdout.write(render(plan, fmt, settings))
    print(f"created {len(created)} topic(s){': ' + ', '.join(created) if created else ''}; "
          f"{len(existed)} already there{' (left as they are)' if existed else ''}", file=sys.stderr)
    return 0


def _produce(settings: Settings, path: str, rate: float | None = None, progress: str = "auto") -> int:
    from streams.dev.produce import produce_file, report

    if not settings.bootstrap:
        raise CommandError("produce needs a broker: set KAFKA_BOOTSTRAP_SERVERS (e.g. to the address printed by "
                           "'churn-signals broker')")
    from streams.topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    return report(asyncio.run(produce_file(settings, path, rate=rate, progress=progress)))


if __name__ == "__main__":
    sys.exit(main())
