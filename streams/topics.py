"""The topic plan: every topic the worker needs, and creating (or only checking) it.

One plan (`topic_plan`) serves the worker at start-up (`ensure_topics`), the
`churn-signals topics` command an operator hands to whoever owns the cluster
(`render`), and deploy/kafka/create-topics.sh, which is that command's output
(a unit test keeps them equal). It names Faust's own topics too (the table
changelog and the assignor's leader topic): the worker creates them before
Faust starts, with the same replication factor and min.insync.replicas as ours,
and Faust's own declaration finds them there (with `CHURN_CREATE_TOPICS=false`
Faust declares nothing: `topic_allow_declare`).

All input topics, the clock topic and the table changelog have the same
partition count: the customer table is co-partitioned with them. If some
already exist, their count wins; a mismatch is a clear error, not a crash
inside Faust.

Must never: create a topic when `create_topics` is false; ignore a topic the
broker refused to create (the error comes back per topic, not as an exception).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.errors import CommandError
from streams.connection import KafkaConnection, start
from streams.settings import Settings

DAY_MS = 86_400_000
TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: tuple[tuple[str, str], ...]
    role: str   # input | clock | output | changelog | leader: who writes it and why it exists
    why: str    # one line for the operator

    @property
    def co_partitioned(self) -> bool:
        return self.role in ("input", "clock", "changelog")

    def describe(self) -> str:
        return f"{self.name} ({self.partitions} partition{'s' if self.partitions != 1 else ''})"


def changelog_topic(app_id: str) -> str:
    """Faust names a table's changelog <app id>-<table>-changelog (tests/unit/test_topics.py pins it)."""
    return f"{app_id}-customers-changelog"


def leader_topic(app_id: str) -> str:
    """Faust's assignor declares <app id>-__assignor-__leader (one partition) for on_leader timers."""
    return f"{app_id}-__assignor-__leader"


#: The table changelog's configs besides min.insync.replicas: compacted (the latest state per
#: customer is all a restore needs), each record left uncompacted for at least a minute (as
#: deploy/kafka/create-topics.sh always made it).
CHANGELOG_CONFIGS = (("cleanup.policy", "compact"), ("min.compaction.lag.ms", "60000"))


def isr_configs(settings: Settings) -> tuple[tuple[str, str], ...]:
    """min.insync.replicas for every topic we create, when set (else the cluster's default)."""
    return (("min.insync.replicas", str(settings.min_insync_replicas)),) if settings.min_insync_replicas else ()


def topic_plan(settings: Settings, partitions: int | None = None) -> list[TopicSpec]:
    """Every topic the worker reads or writes, Faust's included; `partitions`: the co-partitioned count."""
    n = partitions or settings.partitions
    rf = settings.replication_factor
    isr = isr_configs(settings)
    t = settings.topics

    def spec(name: str, role: str, why: str, *configs: tuple[str, str], parts: int = n) -> TopicSpec:
        return TopicSpec(name, parts, rf, (*configs, *isr), role, why)

    def retention(days: float) -> tuple[str, str]:
        return ("retention.ms", str(int(days * DAY_MS)))

    return [
        *(spec(name, "input", "input events; 7 days to replay from for a rebuild", retention(7))
          for name in t.inputs),
        spec(t.clock, "clock", "clock ticks of the live worker; needed only until consumed", retention(1 / 24)),
        spec(t.triggers, "output", "actionable triggers for the CRM", retention(30)),
        spec(t.audit, "output", "suppressed decisions with their reasons", retention(90)),
        spec(t.dlq, "output", "dead letters: bad input with raw bytes and the reason", retention(30)),
        spec(changelog_topic(settings.app_id), "changelog",
             "Faust table changelog: each customer's latest state", *CHANGELOG_CONFIGS),
        spec(leader_topic(settings.app_id), "leader", "Faust assignor's leader election; never written",
             parts=1),
    ]


def table_topic_configs(settings: Settings) -> dict[str, str]:
    """The changelog's configs, for Faust's own declaration of it (`Table(extra_topic_configs=...)`)."""
    [changelog] = [s for s in topic_plan(settings) if s.role == "changelog"]
    return dict(changelog.configs)


# -- at start-up ----------------------------------------------------------------------------------

async def admin_client(conn: KafkaConnection, timeout: float = 15.0) -> AIOKafkaAdminClient:
    """A started admin client; one line saying why when it cannot start (streams/connection.py)."""
    admin = conn.admin(request_timeout_ms=int(timeout * 1000))
    await start(conn, admin, timeout, close=admin.close)
    return admin


async def existing_topics(admin: AIOKafkaAdminClient) -> dict[str, int]:
    """Topic -> partition count of every topic the client may see."""
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics() if not t.get("error_code")}


def co_partitions(settings: Settings, existing: dict[str, int]) -> int:
    """The partition count of the co-partitioned topics: the existing ones' if any, else the setting."""
    counts = {s.name: existing[s.name] for s in topic_plan(settings) if s.co_partitioned and s.name in existing}
    if len(set(counts.values())) > 1:
        raise CommandError(
            "input topics, the clock topic and the table changelog must have the same number of partitions "
            f"(the customer table is co-partitioned with them), found {counts}")
    return next(iter(counts.values())) if counts else settings.partitions


def missing_line(settings: Settings, missing: Sequence[TopicSpec]) -> str:
    """One line naming every missing topic and the partitions it needs."""
    isr = f", min.insync.replicas {settings.min_insync_replicas}" if settings.min_insync_replicas else ""
    return (f"CHURN_CREATE_TOPICS=false and {len(missing)} topic{'s are' if len(missing) != 1 else ' is'} "
            f"missing: {', '.join(s.describe() for s in missing)}; have them created (replication factor "
            f"{settings.replication_factor}{isr}; `churn-signals topics` prints each with its configs)")


async def ensure_topics(settings: Settings, timeout: float = 15.0) -> int:
    """Create the plan's missing topics (or only check them); return the partition count the worker must use."""
    assert settings.bootstrap
    admin = await admin_client(settings.kafka, timeout)
    try:
        existing = await existing_topics(admin)
        n = co_partitions(settings, existing)
        missing = [s for s in topic_plan(settings, n) if s.name not in existing]
        if missing and not settings.create_topics:
            raise CommandError(missing_line(settings, missing))
        await create(admin, missing)
        return n
    finally:
        await admin.close()


async def create(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[str]:
    """Create these topics; the names it created (one another worker created first is fine)."""
    if not specs:
        return []
    response = await admin.create_topics([
        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs)) for s in specs])
    created, refused = [], []
    for error in response.to_object()["topic_errors"]:
        code = error["error_code"]
        if code == 0:
            created.append(error["topic"])
        elif code != TOPIC_ALREADY_EXISTS:
            refused.append((error["topic"], code, error.get("error_message")))
    if refused:
        raise CommandError(_refused_line(refused, specs))
    return created


def _refused_line(refused: list[tuple[str, int, str | None]], specs: Sequence[TopicSpec]) -> str:
    from aiokafka.errors import for_code

    topic, code, message = refused[0]
    name = for_code(code).__name__
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    hint = {
        "InvalidReplicationFactorError": "set CHURN_REPLICATION_FACTOR to at most the number of brokers",
        "TopicAuthorizationFailedError": "this user may not create topics: have them created from "
                                          "`churn-signals topics` and set CHURN_CREATE_TOPICS=false",
        "PolicyViolationError": "the cluster's topic policy refused it: have the topics created from "
                                "`churn-signals topics` and set CHURN_CREATE_TOPICS=false",
    }.get(name, "see the broker's log")
    rf = next((s.replication_factor for s in specs if s.name == topic), None)
    detail = f": {message}" if message else ""
    return f"cannot create topic {topic}{more} with replication factor {rf}: {name}{detail}; {hint}"


async def apply_plan(settings: Settings, timeout: float = 15.0) -> tuple[list[TopicSpec], list[str], list[str]]:
    """`churn-signals topics --apply`: (the plan, the topics created, the ones that were there)."""
    assert settings.bootstrap
    admin = await admin_client(settings.kafka, timeout)
    try:
        existing = await existing_topics(admin)
        plan = topic_plan(settings, co_partitions(settings, existing))
        created = await create(admin, [s for s in plan if s.name not in existing])
        return plan, created, [s.name for s in plan if s.name in existing]
    finally:
        await admin.close()


# -- for the operator ------------------------------------------------------------------------------

def render(plan: Sequence[TopicSpec], fmt: str, settings: Settings) -> str:
    """The plan as a table (people), a kafka-topics.sh script (the cluster's owner) or JSON (tools)."""
    if fmt == "json":
        return json.dumps([{"name": s.name, "partitions": s.partitions, "replication_factor": s.replication_factor,
                            "configs": dict(s.configs), "role": s.role, "why": s.why} for s in plan], indent=2) + "\n"
    if fmt == "sh":
        return _script(plan, settings)
    rows = [("topic", "partitions", "replicas", "configs", "role"),
            *((s.name, str(s.partitions), str(s.replication_factor),
               ",".join(f"{k}={v}" for k, v in s.configs) or "-", s.role) for s in plan)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] + "\n"
                   for r in rows)


def _script(plan: Sequence[TopicSpec], settings: Settings) -> str:
    """A bash script that creates the plan's topics with kafka-topics.sh; idempotent (--if-not-exists)."""
    n = next(s.partitions for s in plan if s.co_partitioned)
    isr = str(settings.min_insync_replicas or "")
    bootstrap = settings.bootstrap or ""
    lines = [
        "#!/usr/bin/env bash",
        "# The churn-signals topic plan: every topic the worker reads or writes (Faust's changelog and",
        "# leader topics included), each with its partitions, replication and configs. Idempotent",
        "# (--if-not-exists). Written by `churn-signals topics --format sh`; change the settings and",
        "# write it again rather than editing it (docs/operations.md, \"Topics\").",
        "#",
        "# Input topics, the clock and the table changelog share one partition count: the customer",
        "# table is co-partitioned with them. Override with the variables below, e.g.",
        "#   BOOTSTRAP=kafka-1:9092 REPLICATION=3 MIN_INSYNC=2 COMMAND_CONFIG=client.properties ./create-topics.sh",
        "set -euo pipefail",
        f"BOOTSTRAP=${{BOOTSTRAP:-{bootstrap}}}" if bootstrap else
        "BOOTSTRAP=${BOOTSTRAP:?set BOOTSTRAP to host:port of the cluster}",
        f"PARTITIONS=${{PARTITIONS:-{n}}}",
        f"REPLICATION=${{REPLICATION:-{settings.replication_factor}}}",
        f"MIN_INSYNC=${{MIN_INSYNC:-{isr}}}           # empty: the cluster's min.insync.replicas",
        "COMMAND_CONFIG=${COMMAND_CONFIG:-}   # client properties for a secured cluster (SASL, TLS)",
        "KAFKA_TOPICS=${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}",
        "",
        "create() {  # name partitions config...",
        "  local name=$1 parts=$2; shift 2",
        "  local args=()",
        "  for c in \"$@\"; do args+=(--config \"$c\"); done",
        "  if [ -n \"$MIN_INSYNC\" ]; then args+=(--config \"min.insync.replicas=$MIN_INSYNC\"); fi",
        "  if [ -n \"$COMMAND_CONFIG\" ]; then args+=(--command-config \"$COMMAND_CONFIG\"); fi",
        "  \"$KAFKA_TOPICS\" --bootstrap-server \"$BOOTSTRAP\" --create --if-not-exists \\",
        "    --topic \"$name\" --partitions \"$parts\" --replication-factor \"$REPLICATION\" \"${args[@]}\"",
        "}",
        "",
    ]
    for s in plan:
        parts = "\"$PARTITIONS\"" if s.co_partitioned or s.partitions == n else str(s.partitions)
        configs = " ".join(shlex.quote(f"{k}={v}") for k, v in s.configs if k != "min.insync.replicas")
        lines.append(f"create {shlex.quote(s.name)} {parts}{' ' + configs if configs else ''}   # {s.why}")
    lines += ["", "\"$KAFKA_TOPICS\" --bootstrap-server \"$BOOTSTRAP\" --list "
              "${COMMAND_CONFIG:+--command-config \"$COMMAND_CONFIG\"}", ""]
    return "\n".join(lines)
