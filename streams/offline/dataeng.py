"""The data-engineering commands: replay, shadow, diff, explain, report (argument parsing and wiring).

cli.py registers these through `add_commands` and hands the parsed arguments
to `run`; the work itself lives in sources.py, replay.py, sinks.py, diff.py,
explain.py and report.py. Exit codes: 0 clean, 1 something to look at (replay: lines were
rejected; diff and shadow: the trigger sets differ, or one holds an id
for two different triggers), 2 error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from schemas.errors import CommandError, ConfigError
from streams.settings import Settings, load_settings

COMMANDS = ("replay", "shadow", "diff", "explain", "report")

SOURCE_HELP = ("event log: a JSON Lines file (.gz accepted, - for stdin), a directory of them (merged in "
               "event-time order), or kafka:[TOPIC,...] for a topic range (default: the configured input topics)")


def _lateness(value: str) -> int:
    from detectors.config import parse_duration

    if value.strip() in ("0", "0s", "0ms"):
        return 0
    try:
        return parse_duration(value, "--lateness")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _source_args(p: argparse.ArgumentParser, parse_time: Callable[[str], int]) -> None:
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--from", dest="from_ms", type=parse_time, metavar="TIME",
                   help="write only triggers with event time at or after this RFC 3339 time (earlier events "
                   "still build the state)")
    p.add_argument("--until", type=parse_time, metavar="TIME",
                   help="ignore events after this RFC 3339 time and advance the clock to it at the end, so "
                   "silence due by then fires")
    p.add_argument("--now", type=parse_time, metavar="TIME",
                   help="the present, for the future-time bound: events later than this plus max_future_skew are "
                   "rejected (future_time), as the live worker rejects them (default: the wall clock when the run "
                   "starts; set it for a reproducible run, or for a log dated after today)")
    p.add_argument("--lateness", type=_lateness, default=None, metavar="DURATION",
                   help="reorder buffer: events up to this much out of event-time order are put back in order "
                   "(e.g. 10m, 2h, 0 for none; default: the detector setting allowed_lateness, 15m unless "
                   "configured); later ones are applied as late and reported")
    p.add_argument("--params", metavar="PARAMS.json",
                   help="cadence model and RFM cut points from 'churn-signals fit' (as for the worker)")
    p.add_argument("--start", default="beginning", metavar="WHERE",
                   help="topic sources: where to start reading: beginning (default), an offset (every "
                   "partition) or an RFC 3339 time (Kafka timestamp = event time); reads to the end")


def add_commands(add: Callable[[str, str, str], argparse.ArgumentParser],
                 parse_time: Callable[[str], int]) -> None:
    r = add("replay", "run the detector offline over files or a topic range",
            "Replay an event log through the same detector core as the live worker, on an event-time clock. "
            "Triggers go to --out (default stdout) or --out-topic; a summary table (events by type and outcome, "
            "triggers by kind and decision, rejects) and, on a terminal, a progress bar go to stderr. Invalid "
            "lines are rejected with their line numbers and reasons (to --rejects FILE too); exit code 1 when "
            "any line was rejected.")
    _source_args(r, parse_time)
    r.add_argument("--out", help="write triggers here as JSON Lines (structured CloudEvents; .gz compresses); "
                   "default stdout")
    r.add_argument("--out-topic", help="produce triggers to this Kafka topic instead (key = customer id, "
                   "timestamp = trigger event time)")
    r.add_argument("--audit-topic", help="with --out-topic: suppressed decisions go here (default: the same topic)")
    r.add_argument("--rejects", metavar="FILE", help="write every rejected line here as JSON Lines "
                   "(source, line, reason, message, raw)")
    r.add_argument("--snapshot-out", help="write one JSON line per customer: state summary and risk score")
    r.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress bar on stderr: auto = only on a terminal (default)")

    s = add("shadow", "replay one log under a baseline and a candidate configuration and diff the triggers",
            "Replay the same log twice, under the baseline detector configuration (CHURN_CONFIG / environment, or "
            "--baseline FILE) and under a candidate (--candidate FILE and/or --set NAME=VALUE over the baseline), "
            "and print which triggers the candidate adds, removes or changes. Exit code 1 when they differ.")
    _source_args(s, parse_time)
    s.add_argument("--baseline", metavar="TOML", help="config file of the baseline (default: CHURN_CONFIG)")
    s.add_argument("--candidate", metavar="TOML", help="config file of the candidate ([detector] table)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="candidate detector setting over the baseline, e.g. --set silence_windows=grocery=5d/10d "
                   "(repeatable)")
    s.add_argument("--out-dir", help="also write baseline.jsonl and candidate.jsonl trigger files here")
    _diff_args(s)

    d = add("diff", "compare two trigger files",
            "Compare two JSON Lines files of trigger CloudEvents (from replay --out or read off the trigger topic) "
            "by trigger id (customer, kind, episode, stage and the causing event): added, removed and changed "
            "triggers with counts by kind. A line repeating a trigger already read (same id, same content) is an "
            "at-least-once copy and counts once; one id for two different triggers is reported as a conflict. "
            "Exit code 1 when they differ or either file has a conflict.")
    d.add_argument("a", help="trigger file A (the baseline)")
    d.add_argument("b", help="trigger file B (the candidate)")
    _diff_args(d)

    e = add("explain", "one customer's timeline, state and triggers, in words",
            "Replay the log and show one customer's timeline: each event and its outcome, the state after it "
            "and the next deadline, and why each trigger fired (reason codes, evidence) or was suppressed.")
    e.add_argument("customer", help="customer id")
    _source_args(e, parse_time)
    e.add_argument("--json", action="store_true", help="print the timeline as JSON")

    rp = add("report", "re-activation of contacted customers against the holdout: Markdown, JSON, charts",
             "Measure what the triggers returned: per trigger kind, favourite category and chain step, contacted "
             "customers and the holdout, their re-activation rate within --window after the first touch (orders "
             "from the event log), the uplift with a 95%% confidence interval (Newcombe's hybrid score interval), "
             "incremental returns, and revenue and retention of returned customers 30/60/90 days after the "
             "return. The decisions come from --triggers FILE (replay --out, or the trigger and audit topics "
             "read into a file), or the report replays SOURCE itself. Writes report.md, report.json and PNG "
             "charts (with matplotlib) to --out-dir; the first line on stdout is the summary. Never reads the "
             "clock: the end of the measurement is --until or the last event of the log.")
    _source_args(rp, parse_time)
    rp.add_argument("--triggers", metavar="FILE", help="trigger log (JSON Lines of trigger CloudEvents, emitted "
                    "and suppressed); default: replay SOURCE")
    rp.add_argument("--window", type=_lateness, default=30 * 86_400_000, metavar="DURATION",
                    help="re-activation window after the first touch (default 30d)")
    rp.add_argument("--out-dir", default="report", help="where report.md, report.json and the charts go "
                    "(default ./report)")


def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the full diff as JSON")
    p.add_argument("--limit", type=int, default=50, help="list at most this many triggers per group (default 50)")
    p.add_argument("--strict", action="store_true", help="compare config_version too (ignored by default)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "now", False) is None and args.command != "report":
        # Read once: shadow's two sides must judge the same events as being in the future.
        # (The report never reads the clock: without --now it bounds no event by it.)
        args.now = time.time_ns() // 1_000_000
    try:
        return _run(settings, args)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted; stop quietly like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "replay":
        return _replay(settings, args)
    if args.command == "diff":
        from streams.offline.diff import load_triggers

        return _print_diff(load_triggers(args.a), load_triggers(args.b), args)
    if args.command == "shadow":
        return _shadow(settings, args)
    if args.command == "explain":
        return _explain(settings, args)
    if args.command == "report":
        return _report(settings, args)
    raise CommandError(f"unknown command {args.command}")  # pragma: no cover - argparse rejects it


def _open_source(settings: Settings, args: argparse.Namespace) -> Any:
    from schemas.decode import to_epoch_ms
    from streams.offline.sources import StartAt, open_source

    start = None
    if args.start != "beginning":
        from schemas.validator import parse_rfc3339

        if not args.start.isdigit() and args.start != "earliest" and parse_rfc3339(args.start) is None:
            raise CommandError(f"--start: expected beginning, an offset or an RFC 3339 time, got {args.start!r}")
        start = StartAt.parse(args.start, to_epoch_ms)
    return open_source(args.source, settings.kafka, settings.topics.inputs, start)


def _replayer(settings: Settings, args: argparse.Namespace, cfg: Any = None, **kw: Any) -> Any:
    from streams.offline.replay import Replayer

    cfg = cfg or settings.detector
    return Replayer(cfg, lateness_ms=args.lateness, from_ms=args.from_ms,
                    until_ms=args.until, decoder=settings.event_decoder(cfg), now_ms=args.now, **kw)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.replay import snapshots, summary_table
    from streams.offline.sinks import FileSink, RejectSink, TopicSink
    from streams.progress import Progress

    source = _open_source(settings, args)
    sink: Any
    if args.out_topic:
        if args.out:
            raise CommandError("choose one of --out and --out-topic")
        if not settings.bootstrap:
            raise CommandError("--out-topic needs a broker: set KAFKA_BOOTSTRAP_SERVERS")
        sink = TopicSink(settings, args.out_topic, args.audit_topic)
    else:
        sink = FileSink(args.out)
    rejects = RejectSink(args.rejects) if args.rejects else None
    try:
        replayer = _replayer(settings, args, on_trigger=sink.write,
                             on_reject=rejects.write if rejects else None)
        label = os.path.basename(args.source.rstrip("/")) or args.source
        progress = Progress(source.progress, label=label, mode=args.progress)
        result = replayer.run_source(source, progress)
    finally:
        sink.close()
        if rejects:
            rejects.close()
    if args.snapshot_out:
        now = args.until if args.until is not None else result.clock
        with open(args.snapshot_out, "wb") as fh:
            for row in snapshots(settings.detector, result, now):
                fh.write(orjson.dumps(row) + b"\n")
    where = f"topic {args.out_topic}" if args.out_topic else (args.out or "stdout")
    print(f"replayed {result.events} events, {result.written} triggers to {where}, "
          f"{result.rejected} rejected lines", file=sys.stderr)
    print(summary_table(result), file=sys.stderr)
    if getattr(source, "skipped", 0):
        print(f"{source.skipped} messages before --start {args.start} were read and skipped (the broker's time "
              "index placed the start earlier)", file=sys.stderr)
    if result.rejected and not args.rejects:
        print("(use --rejects FILE to keep every rejected line)", file=sys.stderr)
    return 1 if result.rejected else 0


def _print_diff(a: Any, b: Any, args: argparse.Namespace) -> int:
    from streams.offline.diff import IGNORED, diff, render

    result = diff(a, b, () if args.strict else IGNORED)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render(result, args.limit))
    return 0 if result.identical else 1


def _candidate_settings(args: argparse.Namespace) -> tuple[Settings, Settings]:
    env = dict(os.environ)
    base_env = dict(env)
    if args.baseline:
        base_env["CHURN_CONFIG"] = args.baseline
    cand_env = dict(base_env)
    if args.candidate:
        cand_env["CHURN_CONFIG"] = args.candidate
    for item in args.sets:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CommandError(f"--set: expected NAME=VALUE, got {item!r}")
        cand_env[f"CHURN_DETECTOR_{name.strip().upper()}"] = value
    if not args.candidate and not args.sets:
        raise CommandError("shadow needs a candidate: --candidate FILE and/or --set NAME=VALUE")
    from streams.offline.fit import with_params

    # --params is the fitted model of both sides; a candidate's own `--set params=FILE` wins.
    own_model = any(item.partition("=")[0].strip().lower() == "params" for item in args.sets)
    baseline = with_params(load_settings(base_env), args.params)
    candidate = load_settings(cand_env)
    return baseline, candidate if own_model else with_params(candidate, args.params)


def _shadow(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.diff import TriggerSet
    from streams.offline.sinks import FileSink

    baseline, candidate = _candidate_settings(args)
    if args.source == "-":
        raise CommandError("shadow reads the log twice; give a file, a directory or a topic, not stdin")
    source = _open_source(settings, args)  # one source, read twice: a topic range keeps its end offsets
    sets = []
    for name, s in (("baseline", baseline), ("candidate", candidate)):
        ts = TriggerSet(f"{name} (config {s.detector.version})")
        out = FileSink(os.path.join(args.out_dir, f"{name}.jsonl")) if args.out_dir else None

        def keep(ce: dict[str, Any], _d: Any, ts: TriggerSet = ts, out: FileSink | None = out) -> None:
            ts.add(ce)
            if out is not None:
                out.write(ce)

        replayer = _replayer(settings, args, s.detector, on_trigger=keep)
        try:
            res = replayer.run_source(source)
        finally:
            if out is not None:
                out.close()
        print(f"{name}: config {s.detector.version}, {res.events} events, {len(ts)} triggers, "
              f"{res.rejected} rejected lines", file=sys.stderr)
        sets.append(ts)
    return _print_diff(sets[0], sets[1], args)


def _explain(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline.explain import Timeline, render
    from streams.terminal import printable, printable_json

    source = _open_source(settings, args)
    replayer = _replayer(settings, args)
    timeline = Timeline(replayer, args.customer)
    result = replayer.run_source(source)
    if args.json:
        body = {"customer_id": args.customer, "clock": result.clock, "entries": timeline.entries}
        text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
        sys.stdout.buffer.write(printable_json(text).encode() + b"\n")
    else:
        print(render(args.customer, timeline.entries, result.clock))
    if result.rejected:
        print(f"{result.rejected} lines of the log were rejected (replay --rejects FILE lists them all)",
              file=sys.stderr)
    if not any(e["what"] == "event" for e in timeline.entries):
        print(printable(f"no event of customer {args.customer} in {args.source}"), file=sys.stderr)
        return 1
    return 0


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from streams.offline import report_out
    from streams.offline.report import Orders, Touches, build_report, record_orders
    from streams.offline.sources import Reject

    if args.window <= 0:
        raise CommandError("--window must be longer than 0")
    source = _open_source(settings, args)
    orders, touches = Orders(), Touches()
    rejected = 0

    def keep(ce: dict[str, Any], _d: Any = None) -> None:
        try:
            touches.add(ce, args.from_ms)
        except ValueError as exc:
            raise CommandError(f"{args.triggers}: {exc}") from None

    if args.triggers:
        from streams.offline.diff import load_triggers

        log = load_triggers(args.triggers)
        for ce in log.by_id.values():
            keep(ce)
        for item in source.items(settings.event_decoder(), args.now):
            if isinstance(item, Reject):
                rejected += 1
            else:
                orders.add(item)
        if log.conflicts:
            print(f"{args.triggers}: {len(log.conflicts)} ids stand for two different triggers; the first of "
                  "each counts (diff shows them)", file=sys.stderr)
    else:
        replayer = _replayer(settings, args, on_trigger=keep)
        rejected = replayer.run(record_orders(orders, source.items(replayer.decoder(), args.now))).rejected
    orders.finish(args.until)
    if not orders.last_event:
        raise CommandError(f"no valid event in {args.source}")
    end = args.until if args.until is not None else orders.last_event
    report = build_report(touches, orders, args.window, end, args.source, args.triggers)
    paths = report_out.write(report, args.out_dir)
    print(report_out.summary_line(report["headline"]))
    print("wrote " + ", ".join(paths))
    if report["charts_note"]:
        print(report["charts_note"], file=sys.stderr)
    if rejected:
        print(f"{rejected} lines of the log were rejected (replay --rejects FILE lists them all)", file=sys.stderr)
    return 0

