"""The report's outputs: the summary line, Markdown, JSON and PNG charts (streams/offline/report.py measures).

Charts need matplotlib (the optional extra `report`); without it the other
outputs are written all the same and one line says why the charts are not.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson

from schemas.errors import CommandError
from streams.offline.report import ACTIVE_DAYS, ARMS, HEADLINE_FAMILY, HOLDOUT, HORIZONS, TREATMENT

INTERVAL = ("Newcombe's hybrid score interval (method 10, no continuity correction) for the difference; "
            "Wilson score intervals for each rate; 95 %")
MISSING_MATPLOTLIB = "charts: not drawn, matplotlib is not installed (pip install 'churn-signals[report]')"
HEADLINE_CHART = "reactivation.png"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _pp(x: float) -> str:
    return f"{100 * x:.1f}"


def summary_line(g: dict[str, Any]) -> str:
    """`reactivation: treatment X% (n=..), holdout Y% (n=..), uplift Z pp [lo, hi]`."""
    t, h, u = g[TREATMENT], g[HOLDOUT], g["uplift"]
    uplift = "n/a [n/a, n/a]" if u is None else f"{_pp(u['difference'])} pp [{_pp(u['low'])}, {_pp(u['high'])}]"
    return (f"reactivation: treatment {_pct(t['rate'])} (n={t['customers']}), "
            f"holdout {_pct(h['rate'])} (n={h['customers']}), uplift {uplift}")


# -- Markdown ---------------------------------------------------------------------

def _uplift(g: dict[str, Any]) -> str:
    u = g["uplift"]
    return "n/a" if u is None else f"{_pp(u['difference'])} pp [{_pp(u['low'])}, {_pp(u['high'])}]"


def _incremental(g: dict[str, Any]) -> str:
    i = g["incremental_returns"]
    return "n/a" if i is None else f"{i['estimate']:.1f} [{i['low']:.1f}, {i['high']:.1f}]"


def _money(block: dict[str, Any], what: str) -> str:
    values = block[what]
    if not values:
        return "0"
    return ", ".join(f"{v:,.2f}{' ' + c if c else ''}" for c, v in values.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _groups_table(groups: list[dict[str, Any]], dims: tuple[str, ...]) -> list[str]:
    header = [*dims, "contacted", "holdout", "censored", "re-activated: treatment", "holdout", "uplift [95% CI]",
              "incremental returns"]
    rows = [[*(str(g[d]) for d in dims), str(g[TREATMENT]["customers"]), str(g[HOLDOUT]["customers"]),
             f"{g[TREATMENT]['censored']} / {g[HOLDOUT]['censored']}",
             _pct(g[TREATMENT]["rate"]), _pct(g[HOLDOUT]["rate"]), _uplift(g), _incremental(g)]
            for g in groups if tuple(k for k in ("kind", "category", "step") if k in g) == dims]
    return _table(header, rows) if rows else []


def _after_return(g: dict[str, Any]) -> list[str]:
    rows = []
    for h in HORIZONS:
        cells = [f"{h} d"]
        for a in ARMS:
            rev, ret = g[a]["revenue"].get(str(h)), g[a]["retention"].get(str(h))
            cells += ["n/a", "n/a", "n/a"] if rev is None else [
                str(rev["customers"]), _money(rev, "total"), _money(rev, "mean")]
            cells.append("n/a" if ret is None else f"{_pct(ret['rate'])} ({ret['retained']}/{ret['customers']})")
        rows.append(cells)
    return _table(["after the return", "treatment: returned observed", "revenue", "per customer", "retention",
                   "holdout: returned observed", "revenue", "per customer", "retention"], rows)


def markdown(report: dict[str, Any]) -> str:
    head = report["headline"]
    t, h = head[TREATMENT], head[HOLDOUT]
    triggers = report["trigger_log"] or "replayed by the report"
    lines = [
        "# Re-activation report", "",
        f"Events: `{report['source']}`; decisions: {'`' + triggers + '`' if report['trigger_log'] else triggers}; "
        f"re-activation window {report['window_days']} days; log end {report['end']}.", "",
        f"**{summary_line(head)}**", "",
        f"Headline: the `{HEADLINE_FAMILY}` family, each customer at their first touch. "
        f"Contacted customers re-activated {_pct(t['rate'])} of the time, the holdout {_pct(h['rate'])}: "
        f"{_incremental(head)} returns more than the holdout's rate predicts for {t['customers']} contacted "
        f"customers. Censored (first touch within {report['window_days']} days of the end): "
        f"{t['censored']} contacted, {h['censored']} holdout.", "",
    ]
    if HEADLINE_CHART in report["charts"]:
        lines += [f"![cumulative re-activation, treatment vs holdout]({HEADLINE_CHART})", ""]
    if report["charts_note"]:
        lines += [f"_{report['charts_note']}_", ""]
    lines += ["## Revenue and retention of returned customers (headline)", "",
              f"Revenue: orders from the return to 30/60/90 days after it, by currency. Retention: an order in "
              f"the {ACTIVE_DAYS} days before day 30/60/90 after the return. Only customers whose horizon lies "
              "before the end.", "", *_after_return(head), ""]
    for title, dims in (("By kind", ("kind",)), ("By kind and favourite category", ("kind", "category")),
                        ("By kind and chain step", ("kind", "step"))):
        table = _groups_table(report["groups"], dims)
        lines += [f"## {title}", ""]
        if dims == ("kind",) and len(report["charts"]) > 1:
            lines += ["Charts: " + ", ".join(f"[{n}]({n})" for n in report["charts"] if n != HEADLINE_CHART), ""]
        lines += table if table else ["No chain steps in these decisions: win-back chains do not emit "
                                      "`winback_step` triggers yet."] if dims[-1] == "step" else ["none"]
        lines.append("")
    lines += ["## Definitions", "", *(f"- **{k}**: {v}" for k, v in report["definitions"].items()), "",
              "## Decisions in neither arm", ""]
    excluded = report["excluded_decisions"]
    lines += _table(["why", "decisions"], [[k, str(v)] for k, v in excluded.items()]) if excluded else ["none"]
    return "\n".join(lines) + "\n"


# -- charts -----------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "group"


def charts(report: dict[str, Any], out_dir: str) -> tuple[list[str], str | None]:
    """Draw the headline's and each kind's cumulative curves; (file names, why none were drawn)."""
    try:
        import matplotlib
    except ImportError:
        return [], MISSING_MATPLOTLIB
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    todo = [(HEADLINE_CHART, f"{HEADLINE_FAMILY} (headline)", report["headline"])]
    todo += [(f"reactivation-{_slug(g['kind'])}.png", g["kind"], g) for g in report["groups"]
             if set(g) & {"category", "step"} == set()]
    names = []
    for name, title, g in todo:
        if not (g[TREATMENT]["curve"] or g[HOLDOUT]["curve"]):
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for arm, colour in ((TREATMENT, "#1f77b4"), (HOLDOUT, "#7f7f7f")):
            curve = g[arm]["curve"]
            if curve:
                ax.step(range(len(curve)), [100 * v for v in curve], where="post", color=colour,
                        label=f"{arm} (n={g[arm]['customers']})")
        ax.set_xlabel("days since first touch")
        ax.set_ylabel("re-activated, cumulative %")
        ax.set_title(f"Re-activation: {title}\nuplift {_uplift(g)}", fontsize=10)
        ax.set_xlim(0, report["window_days"])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), metadata={"Software": None})
        plt.close(fig)
        names.append(name)
    return names, None


def write(report: dict[str, Any], out_dir: str) -> list[str]:
    """Write report.md, report.json and the charts into out_dir; return the paths written."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        names, why = charts(report, out_dir)
        report["charts"], report["charts_note"] = names, why
        paths = [os.path.join(out_dir, n) for n in ("report.md", "report.json")]
        with open(paths[0], "w", encoding="utf-8") as fh:
            fh.write(markdown(report))
        with open(paths[1], "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    except OSError as exc:
        raise CommandError(f"cannot write the report to {out_dir}: {exc.strerror or exc}") from None
    return [*paths, *(os.path.join(out_dir, n) for n in names)]
