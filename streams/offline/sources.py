"""Where replayed events come from: JSON Lines files, a directory of them, or a Kafka topic range.

Every source yields validated `Event`s and `Reject`s (a line or message that
failed decoding, kept with where it came from and why), never dropping one
silently. Sources with several streams (the files of a directory, the
partitions of topics) are merged in event-time order: each stream is read in
its own order and the earliest head goes next, which is exactly event-time
order when every stream is itself sorted, and close to it otherwise (the
reorder buffer in replay.py takes care of the rest).

Sources also report how far they are (`progress()`), for the progress bar.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from schemas import Event, EventDecoder, InvalidEvent
from schemas.errors import CommandError
from streams.connection import KafkaConnection
from streams.offline.jsonl import close_log, iter_lines, open_log

#: File names a directory source reads (anything else in the folder is ignored, and said so).
LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")


@dataclass(slots=True)
class Reject:
    """An input line or message that is not a valid event."""

    source: str           # file path or topic
    position: int         # line number (files) or offset (topics)
    partition: int | None  # topic partition; None for files
    reason: str           # bounded code, as on the DLQ (malformed_json, schema, ...)
    message: str
    raw: bytes
    ts: int = 0           # merge key: the latest event time seen before it on its stream

    def where(self) -> str:
        if self.partition is None:
            return f"{self.source}:{self.position}"
        return f"{self.source}[{self.partition}]@{self.position}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.partition is None:
            out["line"] = self.position
        else:
            out["partition"] = self.partition
            out["offset"] = self.position
        out.update(reason=self.reason, message=self.message, raw=self.raw.decode("utf-8", "replace"))
        return out


Item = Event | Reject


def _ts(item: Item) -> int:
    return item.ts


class FileSource:
    """One JSON Lines file, plain or gzip (by the .gz suffix); `-` is stdin."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._raw: IO[bytes] | None = None
        self.total: float | None = None
        if self.path != "-":
            try:
                self.total = float(os.path.getsize(self.path))
            except FileNotFoundError:
                raise CommandError(f"file not found: {self.path}") from None
            except OSError as exc:
                raise CommandError(f"cannot open {self.path}: {exc.strerror}") from None
            if Path(self.path).is_dir():
                raise CommandError(f"{self.path} is a directory, expected a JSON Lines file")

    def progress(self) -> tuple[float, float | None]:
        """(bytes of the file consumed, file size); compressed bytes for .gz."""
        raw = self._raw
        if raw is None or raw.closed:
            return (self.total or 0.0) if raw is not None else 0.0, self.total
        try:
            return float(raw.tell()), self.total
        except (OSError, ValueError):
            return 0.0, self.total

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, stripped line) for every non-blank line."""
        raw, fh = open_log(self.path)
        self._raw = raw  # progress reads the compressed position from it
        yield from iter_lines(self.path, raw, fh)

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The line handle (decompressing `.gz`), closed afterwards; for readers that split lines themselves."""
        raw, fh = open_log(self.path)
        self._raw = raw
        try:
            yield fh
        finally:
            close_log(raw, fh)

    def items(self, decoder: EventDecoder, now_ms: int | None = None) -> Iterator[Item]:
        decode = decoder.decode
        last = 0
        path = self.path
        for n, line in self.lines():
            try:
                ev = decode(line, now_ms)
            except InvalidEvent as exc:
                yield Reject(path, n, None, exc.reason, str(exc), line, last)
                continue
            last = ev.ts
            ev.origin = (path, n, None, line)  # for a reject the core may still find (a re-used event_id)
            yield ev


class DirectorySource:
    """Every JSON Lines file in a folder (not recursive), merged in event-time order."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        names = sorted(os.listdir(self.path))
        self.files = [FileSource(os.path.join(self.path, n)) for n in names
                      if n.endswith(LOG_SUFFIXES) and os.path.isfile(os.path.join(self.path, n))]
        self.ignored = [n for n in names if not n.endswith(LOG_SUFFIXES)]
        if not self.files:
            raise CommandError(f"no JSON Lines files ({', '.join(LOG_SUFFIXES)}) in {self.path}")
        self.total: float | None = sum(f.total or 0.0 for f in self.files)

    def progress(self) -> tuple[float, float | None]:
        return sum(f.progress()[0] for f in self.files), self.total

    def items(self, decoder: EventDecoder, now_ms: int | None = None) -> Iterator[Item]:
        return heapq.merge(*(f.items(decoder, now_ms) for f in self.files), key=_ts)


@dataclass(frozen=True)
class StartAt:
    """Where a topic range starts: the beginning, an offset (every partition) or an event time."""

    kind: str = "beginning"   # beginning | offset | time
    value: int = 0

    @classmethod
    def parse(cls, text: str, parse_time: Callable[[str], int]) -> StartAt:
        if text in ("beginning", "earliest"):
            return cls()
        if text.isdigit():
            return cls("offset", int(text))
        return cls("time", parse_time(text))


class TopicSource:
    """A range of Kafka topics: from `start` to the end offsets seen when the replay starts.

    The partitions of all topics are merged in event-time order; messages
    appended after the start are not read, so a replay of a live topic ends.
    """

    def __init__(self, conn: KafkaConnection, topics: list[str], start: StartAt | None = None,
                 idle_timeout: float = 30.0) -> None:
        self.conn = conn
        self.bootstrap = conn.bootstrap
        self.topics = topics
        self.start = start or StartAt()
        self.idle_timeout = idle_timeout
        self.total: float | None = None
        self.read = 0
        self.skipped = 0   # messages before a --start time that the broker's time index let through
        #: (topic, partition) -> end offset of the first read; a second read stops at the same
        #: offsets, so two passes over a live topic (shadow) see the same messages.
        self.ends: dict[tuple[str, int], int] = {}

    def progress(self) -> tuple[float, float | None]:
        return float(self.read), self.total

    def items(self, decoder: EventDecoder, now_ms: int | None = None) -> Iterator[Item]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        from streams.connection import quiet_connection_errors, start

        async def create() -> AIOKafkaConsumer:  # aiokafka binds to the loop running when it is built
            return self.conn.consumer(group_id=None, enable_auto_commit=False,
                                      auto_offset_reset="earliest")

        loop = asyncio.new_event_loop()
        consumer = loop.run_until_complete(create())
        try:
            loop.run_until_complete(start(self.conn, consumer))
            try:
                with quiet_connection_errors():
                    # The whole cluster's metadata, partitions included: a Kafka broker names in a
                    # client's own metadata only the topics it asked for (none yet).
                    cluster = loop.run_until_complete(consumer._client.fetch_all_metadata())
                    known = cluster.topics()
            except (TimeoutError, KafkaError, OSError):
                raise CommandError(f"cannot read the topics' metadata from {self.conn.describe()}") from None
            missing = [t for t in self.topics if t not in known]
            if missing:
                raise CommandError(f"topic(s) not found on {self.bootstrap}: {', '.join(missing)}")
            tps = [TopicPartition(t, p) for t in self.topics for p in sorted(cluster.partitions_for_topic(t) or ())]
            loop.run_until_complete(_in_loop(consumer.assign, tps))
            ends = loop.run_until_complete(consumer.end_offsets(tps))
            firsts = loop.run_until_complete(consumer.beginning_offsets(tps))
            starts = self._starts(loop, consumer, tps, firsts, ends)
            self.total = float(sum(max(0, ends[tp] - starts[tp]) for tp in tps))
            streams = []
            for tp in tps:
                loop.run_until_complete(_in_loop(consumer.seek, tp, starts[tp]))
                streams.append(self._partition(loop, consumer, tp, ends[tp], decoder, now_ms,
                                               self.ends.get((tp.topic, tp.partition))))
            yield from heapq.merge(*streams, key=_ts)
        finally:
            loop.run_until_complete(consumer.stop())
            loop.close()

    def _starts(self, loop: asyncio.AbstractEventLoop, consumer: Any, tps: list[Any],
                firsts: dict[Any, int], ends: dict[Any, int]) -> dict[Any, int]:
        kind, value = self.start.kind, self.start.value
        if kind == "offset":
            return {tp: min(max(value, firsts[tp]), ends[tp]) for tp in tps}
        if kind == "time":
            found = loop.run_until_complete(consumer.offsets_for_times(dict.fromkeys(tps, value)))
            return {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        return dict(firsts)

    def _partition(self, loop: asyncio.AbstractEventLoop, consumer: Any, tp: Any, listed_end: int,
                   decoder: EventDecoder, now_ms: int | None = None,
                   fixed_end: int | None = None) -> Iterator[Item]:
        decode = decoder.decode
        last = 0
        min_ts = self.start.value if self.start.kind == "time" else None
        idle_since = time.monotonic()
        # The end is the high watermark of the first fetch: some brokers (the embedded
        # Tansu among them) list an end offset short of the last batch, a fetch never is.
        end: int | None = fixed_end
        if end is not None and loop.run_until_complete(consumer.position(tp)) >= end:
            return
        while True:
            batch = loop.run_until_complete(consumer.getmany(tp, timeout_ms=500, max_records=5000))
            if end is None:
                hw = consumer.highwater(tp)
                if hw is not None:
                    end = max(hw, listed_end)
                    self.total = (self.total or 0.0) + (end - listed_end)
                    self.ends[(tp.topic, tp.partition)] = end
            msgs = batch.get(tp, [])
            if not msgs:
                if end is not None and loop.run_until_complete(consumer.position(tp)) >= end:
                    return
                if time.monotonic() - idle_since > self.idle_timeout:
                    raise CommandError(f"no message from {tp.topic}[{tp.partition}] for {self.idle_timeout:.0f}s "
                                       f"before its end offset {end}")
                continue
            idle_since = time.monotonic()
            for m in msgs:
                if end is not None and m.offset >= end:
                    return
                self.read += 1
                if min_ts is not None and m.timestamp < min_ts:
                    self.skipped += 1  # the broker's time index is approximate on some brokers
                    continue
                raw = m.value
                try:
                    if raw is None:
                        raise InvalidEvent("empty", "message has no value (tombstone)", "decode")
                    ev = decode(raw, now_ms)
                    if m.key is not None and m.key != ev.customer_id.encode():
                        raise InvalidEvent("key_mismatch", "message key must equal customer_id", "semantic")
                except InvalidEvent as exc:
                    yield Reject(tp.topic, m.offset, tp.partition, exc.reason, str(exc), raw or b"", last)
                    continue
                last = ev.ts
                ev.origin = (tp.topic, m.offset, tp.partition, raw)
                yield ev
            if end is not None and msgs[-1].offset >= end - 1:
                return


async def _in_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a synchronous aiokafka method inside the loop (it creates futures on the running loop)."""
    return fn(*args)


Source = FileSource | DirectorySource | TopicSource


def open_source(spec: str, conn: KafkaConnection | None = None, input_topics: tuple[str, ...] = (),
                start: StartAt | None = None) -> Source:
    """`kafka:` (the configured input topics), `kafka:TOPIC[,TOPIC]`, a directory, or a file."""
    if spec.startswith("kafka:"):
        if conn is None or not conn.bootstrap:
            raise CommandError("reading a topic needs a broker: set KAFKA_BOOTSTRAP_SERVERS")
        names = [t.strip() for t in spec[len("kafka:"):].split(",") if t.strip()] or list(input_topics)
        return TopicSource(conn, names, start)
    if start is not None and start.kind != "beginning":
        raise CommandError("--start applies to topic sources (kafka:...); use --from to window a file")
    if spec != "-" and Path(spec).is_dir():
        return DirectorySource(spec)
    return FileSource(spec)
