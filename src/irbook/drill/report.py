"""Drill reports: one Markdown file and one self-contained HTML page per drill.

Both are pure functions of a `DrillResult` (plus its wall-clock `started_at`, shown as
the date). The HTML page loads nothing: inline CSS, an inline SVG timeline, no scripts,
no fonts, no images, and a Content-Security-Policy that forbids them, so it can be
mailed, attached to a ticket or opened offline and shows the same everywhere.

Everything that comes from the alert or the scenario (titles, notes, reasons, error
texts) may be attacker-controlled: in HTML it is escaped with `html.escape`; in Markdown
inline syntax and raw HTML are backslash-escaped and table cells cannot be split by `|`
or a line break. `${{ }}` is shown as written: a report never evaluates anything.

Times are drill seconds (0 = the alert arrives), written with `format_duration`.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from irbook.docs.runbook import cell, code, prose
from irbook.drill.result import DrillResult, StepRecord
from irbook.model.base import format_duration

GENERATOR = "irbook drill"
STEP_COLUMNS = (
    "#",
    "step",
    "state",
    "attempts",
    "start",
    "end",
    "planned API calls",
    "compensation",
    "injected",
)

# Bar colours of the timeline, by step state. The page uses them nowhere else, so a
# screenshot test can find the bars by colour.
STATE_COLOURS: dict[str, str] = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "rejected": "#ef6c00",
    "cancelled": "#6a1b9a",
    "skipped": "#757575",
    "pending": "#1565c0",
}
OTHER_STATE_COLOUR = "#37474f"
PLOT_BACKGROUND = "#f4f6fa"  # the timeline's plot area; used nowhere else on the page
CONTAINMENT_COLOUR = "#00838f"

# Marker kinds: (colour, shape). The shape is the cue that does not depend on colour.
MARKER_STYLES: dict[str, tuple[str, str]] = {
    "approval": ("#283593", "diamond"),
    "timeout": ("#b71c1c", "cross"),
    "inject": ("#ad1457", "triangle-down"),
    "note": ("#4527a0", "square"),
    "retry": ("#e65100", "triangle-up"),
}
OTHER_MARKER_STYLE = ("#455a64", "circle")

NOTE_SECTIONS = (
    "What went well",
    "What went wrong or surprised us",
    "Action items (owner, due date)",
    "Changes to the playbook",
    "Attendees",
)

_ALERT_KEYS = ("source", "format", "trigger", "id", "title", "severity", "type")
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
_SAME_TIME = 1e-3
_HEIGHT = "{height}"  # the SVG's height, known once the legend is laid out
_RANGE = "\u2013"  # en dash between two drill times


# --- shared pieces --------------------------------------------------------------------


def _t(seconds: float | None) -> str:
    """A drill time or duration: '0s', '1m30s', '500ms'; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return format_duration(max(0.0, seconds))


def _text(value: object) -> str:
    return str(value).replace("\r\n", "\n").replace("\r", "\n")


def _date(started_at: float) -> str:
    if not started_at or not math.isfinite(started_at) or started_at < 0:
        return "unknown"
    try:
        when = datetime.fromtimestamp(started_at, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "unknown"
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _safe_url(url: str | None) -> str | None:
    """An http(s) URL that may be a link; anything else is shown as text only."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(ch.isspace() or ch in "<>\"'`" for ch in url.strip()):
        return None
    return url.strip()


def _title(result: DrillResult) -> str:
    return result.title.strip() or result.scenario_id


def _verdict(result: DrillResult) -> str:
    return "PASSED" if result.passed else "FAILED"


def _verdict_detail(result: DrillResult) -> str:
    total = len(result.expectations)
    if not total:
        return "no expectations were set"
    met = sum(1 for e in result.expectations if e.ok)
    return f"{met} of {total} expectations met"


def _attempts(step: StepRecord) -> str:
    text = f"{step.attempts} attempt{'' if step.attempts == 1 else 's'}"
    if step.items != 1:
        text += f", {step.items} items"
    return text


def _approval_text(step: StepRecord) -> str:
    a = step.approval
    if a is None:
        return ""
    if a.how == "timeout":
        text = f"{a.decision} on timeout (nobody decided)"
    else:
        text = f"{a.decision} by {a.by or 'unknown'}"
    return text + (f": {a.comment}" if a.comment else "")


def _compensation(step: StepRecord) -> tuple[str, str]:
    """('irreversible' | 'undo' | 'none', the text)."""
    comp = step.compensation.strip()
    if not comp:
        return "none", ""
    if comp.lower().startswith("irreversible"):
        why = comp.split(":", 1)[1].strip() if ":" in comp else ""
        return "irreversible", why
    return "undo", comp


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", _text(text).strip()) if p.strip()]


def _alert_rows(alert: dict[str, object]) -> list[tuple[str, str]]:
    keys = [k for k in _ALERT_KEYS if k in alert]
    keys += sorted((k for k in alert if k not in _ALERT_KEYS), key=str)
    return [(str(k), _text(alert[k])) for k in keys]


@dataclass
class _Event:
    """One dated thing on the timeline besides the step bars."""

    at: float
    kind: str  # approval | timeout | inject | note | retry | ...
    text: str
    step: str | None
    asked_at: float | None = None  # approvals: when the question was asked
    number: int = 0


def _events(result: DrillResult) -> list[_Event]:
    """Approval decisions (from the steps' records) and the markers, in time order.

    A marker of kind approval/timeout at the moment a step's recorded approval was asked
    or decided is the same event: the structured record (drawn as one wait from asked to
    decided) wins and the marker is not repeated.
    """
    events: list[_Event] = []
    known: list[tuple[str, float]] = []
    for step in result.steps:
        a = step.approval
        if a is None:
            continue
        kind = "timeout" if a.how == "timeout" else "approval"
        events.append(_Event(a.decided_at, kind, _approval_text(step), step.id, a.asked_at))
        known += [(step.id, a.asked_at), (step.id, a.decided_at)]
    for m in result.markers:
        if m.kind in ("approval", "timeout") and any(
            m.step == sid and abs(m.at - at) < _SAME_TIME for sid, at in known
        ):
            continue
        events.append(_Event(m.at, m.kind, m.text, m.step))
    events.sort(key=lambda e: e.at if math.isfinite(e.at) else 0.0)
    for number, event in enumerate(events, start=1):
        event.number = number
    return events


# --- Markdown -------------------------------------------------------------------------


def _md(text: object) -> str:
    """One line of Markdown prose; raw HTML, entities and inline syntax are inert."""
    return prose(_text(text)).replace("&", "\\&")


def _md_code(text: object) -> str:
    return code(_text(text).replace("\n", " "))


def _md_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = [cell(h) for h in header]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def _md_timeline(result: DrillResult, events: list[_Event]) -> list[str]:
    entries: list[tuple[float, int, str]] = []
    for step in result.steps:
        if step.start is None:
            continue
        end = _RANGE + (_t(step.end) if step.end is not None else "(not finished)")
        reason = f": {_md(step.reason)}" if step.reason else ""
        entries.append(
            (
                step.start,
                1,
                f"`{_t(step.start)}{end}` step **{_md(step.id)}** {_md(step.state)}"
                f" ({_attempts(step)}){reason}",
            )
        )
    for e in events:
        asked = f", asked at {_t(e.asked_at)}" if e.asked_at is not None else ""
        if e.asked_at is not None and e.step:
            entries.append(
                (e.asked_at, 0, f"`{_t(e.asked_at)}` approval asked (step {_md(e.step)})")
            )
        where = f" (step {_md(e.step)})" if e.step else ""
        entries.append((e.at, 0, f"`{_t(e.at)}` {_md(e.kind)}{where}: {_md(e.text)}{asked}"))
    if result.contained_at is not None:
        entries.append((result.contained_at, 3, f"`{_t(result.contained_at)}` **contained**"))
    entries.append(
        (result.duration, 4, f"`{_t(result.duration)}` run ended: {_md(result.verdict)}")
    )
    entries.sort(key=lambda e: (e[0] if math.isfinite(e[0]) else 0.0, e[1]))
    out = [f"- {line}" for _, _, line in entries]
    never = [s for s in result.steps if s.start is None]
    if never:
        out.append("")
        out.append("Never started:")
        out.append("")
        for s in never:
            reason = f": {_md(s.reason)}" if s.reason else ""
            out.append(f"- **{_md(s.id)}** {_md(s.state)}{reason}")
    return out


def render_markdown(result: DrillResult) -> str:
    """The report as Markdown (GitHub-flavoured tables), ending in one newline."""
    title = _title(result)
    out: list[str] = [f"# Drill: {_md(title)} — {_verdict(result)}", ""]
    facts = [
        f"- **Result:** {_verdict(result)} ({_verdict_detail(result)})",
        f"- **Scenario:** {_md_code(result.scenario_id)} ({_md_code(result.scenario_path)})",
        f"- **Facilitator:** {_md(result.facilitator) if result.facilitator else 'not set'}",
        f"- **Playbook:** {_md(result.playbook_title or result.playbook_id)} "
        f"({_md_code(result.playbook_id)}, {_md_code(result.playbook_path)})",
        f"- **Date:** {_date(result.started_at)}",
        f"- **Run:** {_md_code(result.run_id)}, outcome {_md(result.verdict)}"
        + (f": {_md(result.message)}" if result.message and result.outcome != "partial" else ""),
    ]
    url = _safe_url(result.prefect_url)
    if url is not None:
        facts.append(f"- **Prefect flow run:** <{url}>")
    elif result.prefect_url:
        facts.append(f"- **Prefect flow run:** {_md_code(result.prefect_url)}")
    out += [*facts, ""]

    out += ["## Scenario", ""]
    if result.description.strip():
        for paragraph in _paragraphs(result.description):
            out += [_md(paragraph), ""]
    out += ["### Alert", ""]
    rows = _alert_rows(result.alert)
    out += _md_table(("field", "value"), ((k, _md(v)) for k, v in rows)) if rows else ["None."]
    out += ["", "### Injects", ""]
    out += [f"- {_md(i)}" for i in result.injects] or ["None."]
    out += ["", "### Approvers", ""]
    out += [f"- {_md(a)}" for a in result.approvers] or ["None."]
    out.append("")

    out += ["## Timeline", "", "Drill time: 0s is the moment the alert arrives.", ""]
    out += _md_timeline(result, _events(result))
    out.append("")

    out += ["## Steps", ""]
    if result.steps:
        step_rows = []
        for n, s in enumerate(result.steps, start=1):
            kind, comp = _compensation(s)
            comp_text = {
                "none": "none",
                "undo": f"undo {_md_code(comp)}",
                "irreversible": "**irreversible**" + (f": {_md(comp)}" if comp else ""),
            }[kind]
            state = f"**{_md(s.state)}**" + (f": {_md(s.reason)}" if s.reason else "")
            if s.approval is not None:
                state += f"; {_md(_approval_text(s))}"
            step_rows.append(
                (
                    str(n),
                    f"{_md_code(s.id)} {_md_code(s.action)} ({_md(s.effect)})",
                    state,
                    str(s.attempts) + (f" ({s.items} items)" if s.items != 1 else ""),
                    _t(s.start) if s.start is not None else "not started",
                    _t(s.end) if s.end is not None else "—",
                    ", ".join(_md_code(c) for c in s.planned_calls) or "none",
                    comp_text,
                    "; ".join(_md(i) for i in s.injected) or "—",
                )
            )
        out += _md_table(
            STEP_COLUMNS,
            step_rows,
        )
    else:
        out.append("No steps.")
    out.append("")

    out += ["## Expectations", ""]
    if result.expectations:
        out += _md_table(
            ("result", "expectation", "expected", "actual", "detail"),
            (
                (
                    "ok" if e.ok else "**FAILED**",
                    _md(e.name),
                    _md(e.expected),
                    _md(e.actual),
                    _md(e.detail) if e.detail else "—",
                )
                for e in result.expectations
            ),
        )
    else:
        out.append("No expectations were set.")
    out.append("")

    out += ["## Time to containment", ""]
    if result.contained_at is not None:
        out.append(
            f"**{_t(result.contained_at)}** from the alert to the end of the last containment step."
        )
    else:
        out.append("**Not contained.**")
    out.append("")

    out += ["## Lint warnings", ""]
    out += [f"- {_md_code(w)}" for w in result.lint] or ["None."]
    out.append("")

    out += ["## Team notes", ""]
    for section in NOTE_SECTIONS:
        out += [f"### {section}", "", "- ", "- ", "- ", ""]
    out.append(f"Generated by {GENERATOR}.")
    return "\n".join(out) + "\n"


# --- HTML: the SVG timeline -----------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(_text(value), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _ticks(end: float, max_ticks: int = 10) -> tuple[float, list[float]]:
    """(the axis' end, tick positions): round steps of 1s, 5s, 1m, 5m, ... from 0."""
    end = max(end, 1.0)
    step = next((float(s) for s in _TICK_STEPS if end / s <= max_ticks), None)
    if step is None:
        step = math.ceil(end / max_ticks / 3600) * 3600.0
    count = max(1, math.ceil(end / step - 1e-9))
    return count * step, [i * step for i in range(count + 1)]


def _glyph(shape: str, x: float, y: float, colour: str, size: float = 6) -> str:
    c = f'fill="{colour}" stroke="#ffffff" stroke-width="1"'
    if shape == "diamond":
        pts = [(x, y - size), (x + size, y), (x, y + size), (x - size, y)]
    elif shape == "triangle-down":
        pts = [(x - size, y - size), (x + size, y - size), (x, y + size)]
    elif shape == "triangle-up":
        pts = [(x - size, y + size), (x + size, y + size), (x, y - size)]
    elif shape == "square":
        s = size * 0.85
        return f'<rect x="{_num(x - s)}" y="{_num(y - s)}" width="{_num(2 * s)}" ' + (
            f'height="{_num(2 * s)}" {c}/>'
        )
    elif shape == "cross":
        s = size * 0.8
        return (
            f'<path d="M{_num(x - s)} {_num(y - s)}L{_num(x + s)} {_num(y + s)}'
            f'M{_num(x - s)} {_num(y + s)}L{_num(x + s)} {_num(y - s)}" '
            f'stroke="{colour}" stroke-width="3" fill="none"/>'
        )
    else:
        return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(size * 0.8)}" {c}/>'
    points = " ".join(f"{_num(px)},{_num(py)}" for px, py in pts)
    return f'<polygon points="{points}" {c}/>'


def _svg_timeline(result: DrillResult, events: list[_Event]) -> str:
    width = 1100.0
    x0, x1 = 230.0, 1070.0
    row_h = 44.0
    top = 34.0
    steps = result.steps
    step_ids = {s.id for s in steps}
    lane_events = [e for e in events if e.step not in step_ids]
    rows = (1 if lane_events else 0) + max(len(steps), 1)

    times = [result.duration, result.contained_at or 0.0]
    for s in steps:
        times += [t for t in (s.start, s.end) if t is not None]
        if s.approval is not None:
            times += [s.approval.asked_at, s.approval.decided_at]
    times += [e.at for e in events]
    finite = [t for t in times if math.isfinite(t)]
    domain, ticks = _ticks(max(finite, default=0.0))

    def x(t: float) -> float:
        t = min(max(t if math.isfinite(t) else 0.0, 0.0), domain)
        return x0 + (x1 - x0) * t / domain

    plot_bottom = top + rows * row_h
    bar_states = [s.state for s in steps if s.start is not None]
    desc = (
        f"{len(steps)} steps, {len(bar_states)} started; {len(events)} events; "
        + (
            f"contained at {_t(result.contained_at)}"
            if result.contained_at is not None
            else "not contained"
        )
        + f"; run ended at {_t(result.duration)} ({result.verdict})."
    )
    out = [
        f'<svg class="timeline" viewBox="0 0 {_num(width)} {_HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" '
        f'aria-labelledby="timeline-title timeline-desc" font-family="sans-serif" '
        f'font-size="12">',
        '<title id="timeline-title">Drill timeline</title>',
        f'<desc id="timeline-desc">{_e(desc)}</desc>',
        f'<rect class="plot" x="{_num(x0)}" y="{_num(top)}" width="{_num(x1 - x0)}" '
        f'height="{_num(rows * row_h)}" fill="{PLOT_BACKGROUND}"/>',
    ]
    # grid and axis
    out.append('<g class="axis" fill="#37474f">')
    for tick in ticks:
        tx = x(tick)
        out.append(
            f'<line x1="{_num(tx)}" y1="{_num(top)}" x2="{_num(tx)}" y2="{_num(plot_bottom)}" '
            f'stroke="#d5dbe5" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_num(tx)}" y="{_num(plot_bottom + 16)}" text-anchor="middle">'
            f"{_e(_t(tick))}</text>"
        )
    out.append(
        f'<text x="{_num((x0 + x1) / 2)}" y="{_num(plot_bottom + 34)}" text-anchor="middle" '
        f'fill="#607d8b">drill time (0s = the alert arrives)</text>'
    )
    out.append("</g>")

    def row_y(index: int) -> float:
        return top + index * row_h

    row = 0
    if lane_events:
        y = row_y(0)
        out.append(
            f'<text x="{_num(x0 - 10)}" y="{_num(y + 26)}" text-anchor="end" '
            f'font-weight="bold">drill events</text>'
        )
        row = 1
    if not steps:
        out.append(
            f'<text x="{_num(x0 + 8)}" y="{_num(row_y(row) + 26)}" fill="#607d8b">no steps</text>'
        )
    rows_of: dict[str, int] = {}
    for s in steps:
        rows_of.setdefault(s.id, row)
        y = row_y(row)
        colour = STATE_COLOURS.get(s.state, OTHER_STATE_COLOUR)
        sub = s.state + (f" · {_attempts(s)}" if s.start is not None else "")
        if s.start is None and s.reason:
            sub += f": {s.reason}"
        out.append(
            f'<g class="step" data-step="{_e(s.id)}"><title>{_e(s.id)}: {_e(s.state)}'
            f"{_e(': ' + s.reason) if s.reason else ''}</title>"
            f'<text x="{_num(x0 - 10)}" y="{_num(y + 18)}" text-anchor="end" '
            f'font-weight="bold">{_e(_short(s.id, 30))}</text>'
            f'<text x="{_num(x0 - 10)}" y="{_num(y + 33)}" text-anchor="end" '
            f'fill="#455a64" font-size="11">{_e(_short(sub, 36))}</text></g>'
        )
        if s.start is not None:
            end = s.end if s.end is not None else result.duration
            bx = x(s.start)
            bw = max(x(end) - bx, 3.0)
            span = _t(s.start) + _RANGE + (_t(s.end) if s.end is not None else "not finished")
            out.append(
                f'<rect class="bar state-{_e(s.state)}" x="{_num(bx)}" y="{_num(y + 16)}" '
                f'width="{_num(bw)}" height="18" rx="2" fill="{colour}">'
                f"<title>{_e(s.id)}: {_e(s.state)}, {_e(span)}, {_e(_attempts(s))}</title>"
                "</rect>"
            )
            if s.end is None:  # an open end: a dashed edge
                out.append(
                    f'<line x1="{_num(bx + bw)}" y1="{_num(y + 14)}" x2="{_num(bx + bw)}" '
                    f'y2="{_num(y + 36)}" stroke="#263238" stroke-dasharray="3 2"/>'
                )
        else:
            out.append(
                f'<text x="{_num(x0 + 8)}" y="{_num(y + 26)}" fill="#607d8b" '
                f'font-style="italic">not started</text>'
            )
        row += 1

    # events: approval waits, then glyphs with their numbers
    for ev in events:
        index = rows_of.get(ev.step, 0) if ev.step is not None else 0
        y = row_y(index) + 25  # the middle of the row's bar
        colour, shape = MARKER_STYLES.get(ev.kind, OTHER_MARKER_STYLE)
        ex = x(ev.at)
        parts = [f'<g class="marker marker-{_e(ev.kind)}">']
        parts.append(f"<title>{ev.number}. {_e(_t(ev.at))} {_e(ev.kind)}: {_e(ev.text)}</title>")
        if ev.asked_at is not None:
            ax = x(ev.asked_at)
            parts.append(
                f'<line x1="{_num(ax)}" y1="{_num(y)}" x2="{_num(ex)}" y2="{_num(y)}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"/>'
                f'<circle cx="{_num(ax)}" cy="{_num(y)}" r="4" fill="#ffffff" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        parts.append(_glyph(shape, ex, y, colour))
        label = str(ev.number)
        if ev.kind in ("approval", "timeout") and ev.asked_at is not None:
            label += " " + _short(ev.text, 34)
        # above the bar; an approval's text goes over its wait when that is long enough
        wait = ex - x(ev.asked_at) if ev.asked_at is not None else 0.0
        anchor = "end" if ex > x1 - 200 or wait > 6.5 * len(label) + 12 else "start"
        lx = ex - 6 if anchor == "end" else ex + 6
        parts.append(
            f'<text x="{_num(lx)}" y="{_num(y - 12)}" text-anchor="{anchor}" '
            f'fill="{colour}" font-size="11" font-weight="bold">{_e(label)}</text>'
        )
        parts.append("</g>")
        out.append("".join(parts))

    # the end of the run and the containment line
    out.append(
        f'<line class="run-end" x1="{_num(x(result.duration))}" y1="{_num(top)}" '
        f'x2="{_num(x(result.duration))}" y2="{_num(plot_bottom)}" stroke="#90a4ae" '
        f'stroke-width="1.5" stroke-dasharray="2 3"><title>run ended at '
        f"{_e(_t(result.duration))}</title></line>"
    )
    if result.contained_at is not None:
        cx = x(result.contained_at)
        anchor = "end" if cx > x1 - 120 else "start"
        out.append(
            f'<g class="containment"><title>contained at {_e(_t(result.contained_at))}</title>'
            f'<line x1="{_num(cx)}" y1="{_num(top - 6)}" x2="{_num(cx)}" '
            f'y2="{_num(plot_bottom)}" stroke="{CONTAINMENT_COLOUR}" stroke-width="3"/>'
            f'<text x="{_num(cx + (-5 if anchor == "end" else 5))}" y="{_num(top - 10)}" '
            f'text-anchor="{anchor}" fill="{CONTAINMENT_COLOUR}" font-weight="bold">'
            f"contained {_e(_t(result.contained_at))}</text></g>"
        )
    else:
        out.append(
            f'<text x="{_num(x0)}" y="{_num(top - 10)}" fill="#b71c1c" '
            f'font-weight="bold">not contained</text>'
        )

    # legend: only what is drawn, so a page without bars has no bar colour at all
    def swatch(colour: str) -> Callable[[float, float], str]:
        return lambda lx, ly: (
            f'<rect x="{_num(lx)}" y="{_num(ly - 10)}" width="12" height="12" fill="{colour}"/>'
        )

    def glyph(colour: str, shape: str) -> Callable[[float, float], str]:
        return lambda lx, ly: _glyph(shape, lx + 6, ly - 4, colour, 5)

    def rule(colour: str, width: str, dash: str) -> Callable[[float, float], str]:
        return lambda lx, ly: (
            f'<line x1="{_num(lx + 6)}" y1="{_num(ly - 12)}" x2="{_num(lx + 6)}" '
            f'y2="{_num(ly + 2)}" stroke="{colour}" stroke-width="{width}"{dash}/>'
        )

    keys: list[tuple[Callable[[float, float], str], str]] = [
        (swatch(STATE_COLOURS.get(state, OTHER_STATE_COLOUR)), state)
        for state in dict.fromkeys(bar_states)
    ]
    keys += [
        (glyph(*MARKER_STYLES.get(kind, OTHER_MARKER_STYLE)), kind)
        for kind in dict.fromkeys(e.kind for e in events)
    ]
    if result.contained_at is not None:
        keys.append((rule(CONTAINMENT_COLOUR, "3", ""), "containment"))
    keys.append((rule("#90a4ae", "1.5", ' stroke-dasharray="2 3"'), "run ended"))
    lx, ly = 10.0, plot_bottom + 60
    items: list[str] = []
    for draw, label in keys:
        label = _short(label, 24)
        step = 34 + 7 * len(label)
        if lx + step > width:
            lx, ly = 10.0, ly + 20
        items.append(draw(lx, ly) + f'<text x="{_num(lx + 16)}" y="{_num(ly)}">{_e(label)}</text>')
        lx += step
    out.append(f'<g class="legend" fill="#37474f">{"".join(items)}</g>')
    out[0] = out[0].replace(_HEIGHT, _num(ly + 18))
    out.append("</svg>")
    return "\n".join(out)


# --- HTML: the page -------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; padding: 24px; color: #1c2733; background: #ffffff; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; }
h1 { margin: 0 0 4px; font-size: 1.7em; }
h2 { margin-top: 2em; border-bottom: 2px solid #e3e7ee; padding-bottom: 4px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em;
  background: #eef1f5; padding: 0 3px; border-radius: 3px; overflow-wrap: break-word; }
.verdict { display: inline-block; padding: 2px 12px; border-radius: 4px; font-weight: bold;
  letter-spacing: 0.05em; border: 2px solid; }
.verdict.passed { color: #1b5e20; background: #e8f5e9; border-color: #1b5e20; }
.verdict.failed { color: #8e0000; background: #fdecea; border-color: #8e0000; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.facts dt { font-weight: bold; color: #455a64; }
dl.facts dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { border: 1px solid #d9dee6; padding: 5px 8px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
td.time, td.num { white-space: nowrap; }
th { background: #eceff3; overflow-wrap: normal; }
.state { font-weight: bold; }
.state-succeeded { color: #1b5e20; }
.state-failed, .irreversible, .bad { color: #8e0000; }
.state-partial { color: #8a4b00; }
.state-rejected { color: #a84300; }
.state-cancelled { color: #4a148c; }
.state-skipped, .state-pending, .muted { color: #546e7a; }
.reason { display: block; font-size: 0.92em; color: #37474f; }
.good { color: #1b5e20; font-weight: bold; }
.bad { font-weight: bold; }
.timeline-box { border: 1px solid #d9dee6; padding: 8px; border-radius: 4px; }
svg.timeline { width: 100%; height: auto; display: block; }
ol.events { font-size: 0.92em; }
.containment { font-size: 1.3em; font-weight: bold; }
.containment.none { color: #8e0000; }
.notes { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.note { border: 1px solid #b0bac6; border-radius: 4px; padding: 8px 12px; }
.note h3 { margin: 0 0 6px; font-size: 1em; }
.note .lines { min-height: 8.4em; line-height: 1.4em; outline: none;
  background: repeating-linear-gradient(to bottom, transparent 0, transparent 1.35em,
    #cfd6df 1.35em, #cfd6df 1.4em); }
footer { margin-top: 3em; color: #78909c; font-size: 0.85em; }
@media print {
  body { padding: 0; }
  h2 { break-after: avoid; }
  .timeline-box, tr, .note { break-inside: avoid; }
}
"""

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def _html_list(items: list[str], empty: str = "None.") -> str:
    if not items:
        return f'<p class="muted">{_e(empty)}</p>'
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _html_codes(items: list[str]) -> str:
    if not items:
        return '<span class="muted">none</span>'
    return "<br>".join(f"<code>{_e(i)}</code>" for i in items)


def _html_steps(result: DrillResult) -> str:
    if not result.steps:
        return '<p class="muted">No steps.</p>'
    rows = []
    for n, s in enumerate(result.steps, start=1):
        kind, comp = _compensation(s)
        if kind == "none":
            comp_html = '<span class="muted">none</span>'
        elif kind == "undo":
            comp_html = f"undo <code>{_e(comp)}</code>"
        else:
            comp_html = '<span class="irreversible">irreversible</span>' + (
                f'<span class="reason">{_e(comp)}</span>' if comp else ""
            )
        state = f'<span class="state state-{_e(s.state)}">{_e(s.state)}</span>'
        if s.reason:
            state += f'<span class="reason">{_e(s.reason)}</span>'
        if s.approval is not None:
            state += f'<span class="reason">{_e(_approval_text(s))}</span>'
        attempts = str(s.attempts) + (f" ({s.items} items)" if s.items != 1 else "")
        start = _e(_t(s.start)) if s.start is not None else '<span class="muted">not started</span>'
        end = _e(_t(s.end)) if s.end is not None else '<span class="muted">—</span>'
        injected = (
            "<br>".join(_e(i) for i in s.injected) if s.injected else '<span class="muted">—</span>'
        )
        rows.append(
            f"<tr><td>{n}</td><td><code>{_e(s.id)}</code><span class='reason'>"
            f"<code>{_e(s.action)}</code> ({_e(s.effect)})</span></td><td>{state}</td>"
            f'<td class="num">{_e(attempts)}</td><td class="time">{start}</td>'
            f'<td class="time">{end}</td>'
            f"<td>{_html_codes(s.planned_calls)}</td><td>{comp_html}</td>"
            f"<td>{injected}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in STEP_COLUMNS)
    body = "".join(rows)
    return f'<table class="steps"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_expectations(result: DrillResult) -> str:
    if not result.expectations:
        return '<p class="muted">No expectations were set.</p>'
    rows = []
    for e in result.expectations:
        verdict = '<span class="good">ok</span>' if e.ok else '<span class="bad">FAILED</span>'
        detail = _e(e.detail) if e.detail else '<span class="muted">—</span>'
        rows.append(
            f"<tr><td>{verdict}</td><td><code>{_e(e.name)}</code></td><td>{_e(e.expected)}</td>"
            f"<td>{_e(e.actual)}</td><td>{detail}</td></tr>"
        )
    return (
        '<table class="expectations"><thead><tr><th>result</th><th>expectation</th>'
        "<th>expected</th><th>actual</th><th>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _html_events(events: list[_Event]) -> str:
    if not events:
        return ""
    items = []
    for ev in events:
        asked = f" (asked at {_e(_t(ev.asked_at))})" if ev.asked_at is not None else ""
        step = f" <code>{_e(ev.step)}</code>" if ev.step else ""
        items.append(
            f'<li value="{ev.number}"><strong>{_e(_t(ev.at))}</strong> {_e(ev.kind)}{step}: '
            f"{_e(ev.text)}{asked}</li>"
        )
    return '<h3>Events</h3><ol class="events">' + "".join(items) + "</ol>"


def render_html(result: DrillResult) -> str:
    """The report as one self-contained HTML page (no scripts, no external assets)."""
    title = _title(result)
    verdict = _verdict(result)
    events = _events(result)
    facts: list[tuple[str, str]] = [
        ("Scenario", f"<code>{_e(result.scenario_id)}</code> ({_e(result.scenario_path)})"),
        ("Facilitator", _e(result.facilitator) if result.facilitator else "not set"),
        (
            "Playbook",
            f"{_e(result.playbook_title or result.playbook_id)} "
            f"(<code>{_e(result.playbook_id)}</code>, <code>{_e(result.playbook_path)}</code>)",
        ),
        ("Date", _e(_date(result.started_at))),
        (
            "Run",
            f"<code>{_e(result.run_id)}</code>, outcome "
            f'<span class="state state-{_e(result.outcome)}">{_e(result.verdict)}</span>'
            + (f": {_e(result.message)}" if result.message and result.outcome != "partial" else ""),
        ),
    ]
    url = _safe_url(result.prefect_url)
    if url is not None:
        facts.append(("Prefect flow run", f'<a href="{_e(url)}">{_e(url)}</a>'))
    elif result.prefect_url:
        facts.append(("Prefect flow run", f"<code>{_e(result.prefect_url)}</code>"))
    alert_rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in _alert_rows(result.alert)
    )
    description = "".join(f"<p>{_e(p.strip())}</p>" for p in _paragraphs(result.description))
    if result.contained_at is not None:
        containment = (
            f'<p class="containment">{_e(_t(result.contained_at))}</p>'
            "<p>from the alert to the end of the last containment step.</p>"
        )
    else:
        containment = '<p class="containment none">Not contained.</p>'
    lint = (
        "<ul>" + "".join(f"<li><code>{_e(w)}</code></li>" for w in result.lint) + "</ul>"
        if result.lint
        else '<p class="muted">None.</p>'
    )
    notes = "".join(
        f'<div class="note"><h3>{_e(s)}</h3><div class="lines" contenteditable="true" '
        f'aria-label="{_e(s)}"></div></div>'
        for s in NOTE_SECTIONS
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="{GENERATOR}">',
        f"<title>Drill report: {_e(title)} ({verdict})</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body><main>",
        "<header>",
        f"<h1>Drill: {_e(title)}</h1>",
        f'<p><span class="verdict {verdict.lower()}">{verdict}</span> '
        f"{_e(_verdict_detail(result))}</p>",
        '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
        "</header>",
        '<section id="scenario"><h2>Scenario</h2>',
        description,
        "<h3>Alert</h3>",
        f'<table class="alert"><tbody>{alert_rows}</tbody></table>'
        if alert_rows
        else '<p class="muted">None.</p>',
        "<h3>Injects</h3>",
        _html_list(result.injects),
        "<h3>Approvers</h3>",
        _html_list(result.approvers),
        "</section>",
        '<section id="timeline"><h2>Timeline</h2>',
        f'<div class="timeline-box">{_svg_timeline(result, events)}</div>',
        _html_events(events),
        "</section>",
        f'<section id="steps"><h2>Steps</h2>{_html_steps(result)}</section>',
        f'<section id="expectations"><h2>Expectations</h2>{_html_expectations(result)}</section>',
        f'<section id="containment"><h2>Time to containment</h2>{containment}</section>',
        f'<section id="lint"><h2>Lint warnings</h2>{lint}</section>',
        '<section id="notes"><h2>Team notes</h2>',
        '<p class="muted">For the debrief: fill in on paper or in the browser.</p>',
        f'<div class="notes">{notes}</div>',
        "</section>",
        f"<footer>Generated by {GENERATOR}.</footer>",
        "</main></body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --- files ----------------------------------------------------------------------------


def report_paths(path: str, result: DrillResult | None = None) -> tuple[str, str]:
    """`--report PATH` -> (STEM.md, STEM.html): a trailing .md/.html/.htm is dropped.

    A PATH that is a directory (it exists, or ends with a slash) gets files named after
    the scenario inside it.
    """
    if path.endswith(("/", "\\")) or Path(path).is_dir():
        name = result.scenario_id if result is not None and result.scenario_id else "drill"
        stem = str(Path(path) / name)
    else:
        suffix = Path(path).suffix
        stem = path[: -len(suffix)] if suffix.lower() in (".md", ".html", ".htm") else path
    return stem + ".md", stem + ".html"


def write_report(result: DrillResult, path: str) -> list[str]:
    """Write STEM.md and STEM.html (parent folders created); returns both paths."""
    md_path, html_path = report_paths(path, result)
    written = []
    for target, text in ((md_path, render_markdown(result)), (html_path, render_html(result))):
        file = Path(target)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text, encoding="utf-8", newline="\n")
        written.append(target)
    return written
