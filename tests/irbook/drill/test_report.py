"""Drill reports: Markdown and self-contained HTML, built from hand-made DrillResults."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from irbook.drill.report import (
    PLOT_BACKGROUND,
    STATE_COLOURS,
    render_html,
    render_markdown,
    report_paths,
    write_report,
)
from irbook.drill.result import (
    ApprovalRecord,
    DrillResult,
    ExpectationResult,
    Marker,
    StepRecord,
)

EVIL = "<script>alert(1)</script> ${{ alert.title }} | a\nb & <img src=x onerror=alert(2)>"


def make_result(*, passed: bool = True, started: bool = True, **overrides: Any) -> DrillResult:
    """A drill of a leaked-key playbook: notify, approve, disable the key, open a ticket.

    `started=False` gives the same drill where no step ever started (all skipped).
    """
    approval = ApprovalRecord(
        decision="approved", by="alice", how="scenario", asked_at=20.0, decided_at=200.0
    )
    steps = [
        StepRecord(
            id="notify-channel",
            action="slack.post_message",
            effect="notify",
            state="succeeded",
            start=0.0,
            end=20.0,
            attempts=1,
            planned_calls=["slack:chat.postMessage"],
        ),
        StepRecord(
            id="disable-key",
            action="aws.iam.update_access_key",
            effect="mutate",
            state="succeeded",
            start=200.0,
            end=260.0,
            attempts=2,
            planned_calls=["iam:UpdateAccessKey", "iam:ListAccessKeys"],
            compensation="aws.iam.reactivate_access_key",
            approval=approval,
            injected=["fail 1x: ThrottlingException"],
        ),
        StepRecord(
            id="open-ticket",
            action="jira.create_issue",
            effect="mutate",
            state="failed",
            reason="jira outage (injected)",
            start=260.0,
            end=330.0,
            attempts=3,
            planned_calls=["jira:POST /rest/api/2/issue"],
            compensation="irreversible: a ticket cannot be deleted",
            injected=["outage: jira"],
        ),
        StepRecord(
            id="page-oncall",
            action="pagerduty.trigger",
            effect="notify",
            state="skipped",
            reason="condition false: severity is not critical",
        ),
    ]
    markers = [
        Marker(at=20.0, kind="approval", text="approval asked", step="disable-key"),
        Marker(at=200.0, kind="approval", text="approved by alice", step="disable-key"),
        Marker(at=60.0, kind="note", text="The SOC lead joins the call"),
        Marker(at=260.0, kind="inject", text="outage: jira", step="open-ticket"),
        Marker(at=230.0, kind="retry", text="retry after ThrottlingException", step="disable-key"),
    ]
    expectations = [
        ExpectationResult(
            name="contained_within", ok=True, expected="within 5m", actual="contained at 4m20s"
        ),
        ExpectationResult(
            name="outcome",
            ok=passed,
            expected="failed" if passed else "succeeded",
            actual="failed",
            detail="" if passed else "the run failed: open-ticket failed",
        ),
    ]
    result = DrillResult(
        scenario_path="drills/leaked-key.yaml",
        scenario_id="leaked-key-jira-down",
        title="Leaked model key while Jira is down",
        facilitator="Bob Facilitator",
        description="A model API key leaks.\n\nJira is down during the response.",
        playbook_id="leaked-model-key",
        playbook_title="Leaked model API key",
        playbook_path="playbooks/leaked-model-key.yaml",
        alert={
            "source": "guardduty",
            "id": "gd-123",
            "title": "Access key used from Tor exit node",
            "severity": "high",
            "type": "UnauthorizedAccess:IAMUser/TorIPCaller",
        },
        run_id="drill-0001",
        flow_run_id="3f1c",
        prefect_url="http://127.0.0.1:4200/runs/flow-run/3f1c",
        outcome="failed",
        message="step open-ticket failed",
        steps=steps,
        markers=markers,
        expectations=expectations,
        contained_at=260.0,
        duration=330.0,
        lint=["playbooks/leaked-model-key.yaml:12:5: warning: step has no timeout"],
        injects=["fail disable-key 1x: ThrottlingException", "outage jira"],
        approvers=["alice approves disable-key after 3m"],
        started_at=1_750_000_000.0,
    )
    if not started:
        for step in result.steps:
            step.start = step.end = None
            step.attempts = 0
            step.state = "skipped"
            step.approval = None
        result.markers = [m for m in result.markers if m.kind == "note"]
        result.contained_at = None
    for key, value in overrides.items():
        setattr(result, key, value)
    return result


def evil_result() -> DrillResult:
    """Attacker text everywhere an alert or a scenario can put it."""
    result = make_result()
    result.title = EVIL
    result.description = EVIL
    result.alert = {"title": EVIL, "source": EVIL}
    result.message = EVIL
    result.steps[0].reason = EVIL
    result.steps[1].injected = [EVIL]
    result.steps[1].planned_calls = [EVIL]
    assert result.steps[1].approval is not None
    result.steps[1].approval.comment = EVIL
    result.steps[1].approval.by = EVIL
    result.markers.append(Marker(at=100.0, kind="note", text=EVIL))
    result.expectations[0].detail = EVIL
    result.expectations[0].actual = EVIL
    result.injects = [EVIL]
    result.approvers = [EVIL]
    result.lint = [EVIL]
    return result


class _Elements(HTMLParser):
    """Every start tag with its attributes, and all text, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def svg_of(page: str) -> str:
    match = re.search(r"<svg.*?</svg>", page, re.S)
    assert match is not None
    return match.group(0)


# --- the HTML page ----------------------------------------------------------------------


def test_html_has_every_section_and_the_header() -> None:
    page = render_html(make_result())
    assert page.startswith("<!DOCTYPE html>")
    for section in ("scenario", "timeline", "steps", "expectations", "containment", "lint"):
        assert f'<section id="{section}">' in page
    assert "Team notes" in page
    assert "Leaked model key while Jira is down" in page
    assert "leaked-key-jira-down" in page
    assert "Bob Facilitator" in page
    assert "leaked-model-key" in page and "Leaked model API key" in page
    assert "2025-06-15 15:06:40 UTC" in page
    assert '<span class="verdict passed">PASSED</span>' in page
    assert "2 of 2 expectations met" in page
    assert '<a href="http://127.0.0.1:4200/runs/flow-run/3f1c">' in page
    assert "UnauthorizedAccess:IAMUser/TorIPCaller" in page  # the alert summary
    assert "<p>A model API key leaks.</p><p>Jira is down during the response.</p>" in page
    assert "outage jira" in page and "alice approves disable-key after 3m" in page
    assert "playbooks/leaked-model-key.yaml:12:5: warning: step has no timeout" in page


def test_html_failed_drill_shows_failed_and_the_detail() -> None:
    page = render_html(make_result(passed=False))
    assert '<span class="verdict failed">FAILED</span>' in page
    assert "1 of 2 expectations met" in page
    assert '<span class="bad">FAILED</span>' in page
    assert "the run failed: open-ticket failed" in page


def test_html_step_table() -> None:
    page = render_html(make_result())
    steps = page.split('<section id="steps">', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", steps, re.S)[1:]
    assert len(rows) == 4
    disable = rows[1]
    assert '<span class="state state-succeeded">succeeded</span>' in disable
    assert "approved by alice" in disable
    assert '<td class="num">2</td>' in disable  # attempts
    assert '<td class="time">3m20s</td><td class="time">4m20s</td>' in disable  # drill time
    assert "<code>iam:UpdateAccessKey</code><br><code>iam:ListAccessKeys</code>" in disable
    assert "undo <code>aws.iam.reactivate_access_key</code>" in disable
    assert "fail 1x: ThrottlingException" in disable
    ticket = rows[2]
    assert '<span class="irreversible">irreversible</span>' in ticket
    assert "a ticket cannot be deleted" in ticket
    assert "jira outage (injected)" in ticket
    never = rows[3]
    assert "not started" in never and "condition false" in never


def test_html_containment() -> None:
    assert '<p class="containment">4m20s</p>' in render_html(make_result())
    page = render_html(make_result(contained_at=None))
    assert '<p class="containment none">Not contained.</p>' in page
    assert "not contained" in svg_of(page)


def test_html_team_notes_are_empty_labelled_boxes() -> None:
    page = render_html(make_result())
    notes = page.split('<section id="notes">', 1)[1]
    boxes = re.findall(r'<div class="note"><h3>([^<]+)</h3><div class="lines"[^>]*></div>', notes)
    assert "What went well" in boxes and "Action items (owner, due date)" in boxes
    assert len(boxes) >= 3


def test_html_is_self_contained() -> None:
    page = render_html(make_result())
    elements = parse(page)
    tags = {tag for tag, _ in elements.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    for tag, attrs in elements.tags:
        assert "src" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), tag
        assert "style" not in attrs, tag
        if tag == "a":  # the one link: the Prefect flow run, navigated to, never loaded
            assert attrs["href"] == "http://127.0.0.1:4200/runs/flow-run/3f1c"
    # URLs: the link above and the SVG namespace, nothing a browser would fetch
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls == {"http://127.0.0.1:4200/runs/flow-run/3f1c", "http://www.w3.org/2000/svg"}
    assert "@import" not in page and "@font-face" not in page
    assert all(ref.startswith("url(#") for ref in re.findall(r"url\([^)]*\)", page))
    assert "default-src 'none'" in page  # and the CSP forbids loading anything anyway


def test_svg_has_a_bar_per_started_step_and_the_markers() -> None:
    result = make_result()
    svg = svg_of(render_html(result))
    assert '<title id="timeline-title">' in svg and '<desc id="timeline-desc">' in svg
    assert 'role="img"' in svg
    bars = re.findall(r'<rect class="bar state-(\w+)"[^>]*fill="(#[0-9a-f]{6})"', svg)
    assert bars == [
        ("succeeded", STATE_COLOURS["succeeded"]),
        ("succeeded", STATE_COLOURS["succeeded"]),
        ("failed", STATE_COLOURS["failed"]),
    ]
    # step labels, and the step that never started is a label without a bar
    for step in result.steps:
        assert f'data-step="{step.id}"' in svg
    assert "not started" in svg
    assert "skipped: condition false" in svg
    # the approval (asked at 20s, decided at 3m20s by alice) is one marker, not repeated
    assert len(re.findall(r'class="marker marker-approval"', svg)) == 1
    assert "approved by alice" in svg
    assert 'class="marker marker-inject"' in svg
    assert 'class="marker marker-note"' in svg and "The SOC lead joins the call" in svg
    assert 'class="marker marker-retry"' in svg
    assert "drill events" in svg  # the lane of markers that belong to no step
    assert 'class="containment"' in svg and "contained 4m20s" in svg
    # tick labels in drill time
    ticks = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', svg)
    assert ticks[:3] == ["0s", "1m", "2m"]
    assert "drill time" in svg


def test_svg_bar_positions_follow_drill_time() -> None:
    svg = svg_of(render_html(make_result()))
    bars = [
        (float(x), float(w))
        for x, w in re.findall(
            r'<rect class="bar[^"]*" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg
        )
    ]
    (x1, w1), (x2, w2), (x3, _) = bars
    assert x1 < x2 < x3
    assert x2 + w2 == pytest.approx(x3, abs=0.2)  # disable-key ends when open-ticket starts
    assert w2 == pytest.approx(w1 * 3, rel=0.02)  # 60s against 20s


def test_svg_without_started_steps_has_no_bars_and_no_bar_colours() -> None:
    svg = svg_of(render_html(make_result(started=False)))
    assert '<rect class="bar' not in svg
    for colour in STATE_COLOURS.values():
        assert colour not in svg  # the legend only shows states that have a bar
    assert PLOT_BACKGROUND in svg  # the frame is still drawn
    assert svg.count("not started") == 4


def test_svg_with_no_steps_and_no_markers() -> None:
    result = make_result(steps=[], markers=[], contained_at=None, duration=0.0)
    svg = svg_of(render_html(result))
    assert "no steps" in svg and '<rect class="bar' not in svg
    assert ">0s<" in svg and ">1s<" in svg


def test_legend_wraps_inside_the_picture() -> None:
    result = make_result()
    states = [*STATE_COLOURS, "some-new-state-nobody-knows"]
    result.steps = [
        StepRecord(id=f"s{i}", action="core.noop", effect="read", state=state, start=i, end=i + 5)
        for i, state in enumerate(states)
    ]
    kinds = ["approval", "timeout", "inject", "note", "retry", "a-kind-from-the-future"]
    result.markers = [Marker(at=10.0 * i, kind=k, text=k) for i, k in enumerate(kinds)]
    svg = svg_of(render_html(result))
    width, height = map(float, re.findall(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg)[0])
    legend = svg.split('<g class="legend"', 1)[1]
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)">([^<]+)</text>', legend)
    for x, y, label in labels:  # 7 units a character is generous for 12px sans-serif
        assert float(x) + 7 * len(label) <= width and float(y) < height, label
    assert len({y for _, y, _ in labels}) >= 2  # more than one line
    for state in states:
        assert f">{state[:23]}" in legend
    assert re.search(r'<rect class="bar state-some-new-state-nobody-knows"[^>]*fill="#37474f"', svg)


def test_long_drill_ticks_stay_readable() -> None:
    result = make_result(duration=4 * 3600.0 + 5)
    svg = svg_of(render_html(result))
    ticks = re.findall(r'<text x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]+)</text>', svg)
    assert 3 <= len(ticks) <= 11
    assert ticks[0] == "0s" and ticks[1] == "30m" and "4h" in ticks


def test_html_escapes_attacker_text() -> None:
    page = render_html(evil_result())
    elements = parse(page)
    tags = {tag for tag, _ in elements.tags}
    assert "script" not in tags and "img" not in tags
    assert not any(name.startswith("on") for _, attrs in elements.tags for name in attrs)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text = "".join(elements.text)
    assert "<script>alert(1)</script>" in text  # shown as text
    assert "${{ alert.title }}" in text  # shown as written, never evaluated
    assert "approved by &lt;script&gt;" in svg_of(page)


def test_prefect_url_is_a_link_only_for_http() -> None:
    page = render_html(make_result(prefect_url="javascript:alert(1)"))
    assert "<a " not in page
    assert "<code>javascript:alert(1)</code>" in page
    page = render_html(make_result(prefect_url=None))
    assert "Prefect flow run" not in page
    md = render_markdown(make_result(prefect_url="javascript:alert(1)"))
    assert "<javascript" not in md and "`javascript:alert(1)`" in md


# --- Markdown ---------------------------------------------------------------------------


def md_sections(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.M)


def test_markdown_sections_and_header() -> None:
    md = render_markdown(make_result())
    assert md.startswith("# Drill: Leaked model key while Jira is down — PASSED\n")
    assert md_sections(md) == [
        "Scenario",
        "Timeline",
        "Steps",
        "Expectations",
        "Time to containment",
        "Lint warnings",
        "Team notes",
    ]
    assert "- **Facilitator:** Bob Facilitator" in md
    assert "- **Date:** 2025-06-15 15:06:40 UTC" in md
    assert "- **Prefect flow run:** <http://127.0.0.1:4200/runs/flow-run/3f1c>" in md
    assert "| type | UnauthorizedAccess:IAMUser/TorIPCaller |" in md
    assert "- outage jira" in md
    assert "\n\nA model API key leaks.\n\nJira is down during the response.\n\n" in md
    assert "**4m20s** from the alert" in md
    assert "- `playbooks/leaked-model-key.yaml:12:5: warning: step has no timeout`" in md


def test_markdown_failed_and_not_contained() -> None:
    md = render_markdown(make_result(passed=False, contained_at=None))
    assert md.startswith("# Drill: Leaked model key while Jira is down — FAILED\n")
    assert "**Result:** FAILED (1 of 2 expectations met)" in md
    assert (
        "| **FAILED** | outcome | succeeded | failed | the run failed: open-ticket failed |" in md
    )
    assert "**Not contained.**" in md


def test_markdown_timeline_is_ordered_by_time() -> None:
    md = render_markdown(make_result())
    timeline = md.split("## Timeline", 1)[1].split("## Steps", 1)[0]
    lines = [line for line in timeline.splitlines() if line.startswith("- `")]
    times = [line.split("`")[1].split("\u2013")[0] for line in lines]
    assert times == [
        "0s",  # notify-channel starts
        "20s",  # approval asked for disable-key
        "1m",  # the note
        "3m20s",  # approved by alice
        "3m20s",  # disable-key starts
        "3m50s",  # retry
        "4m20s",  # the jira outage inject
        "4m20s",  # open-ticket starts
        "4m20s",  # contained
        "5m30s",  # the run ends
    ]
    assert "`20s` approval asked (step disable-key)" in timeline
    assert "approval (step disable-key): approved by alice, asked at 20s" in timeline
    assert "**contained**" in timeline and "run ended: failed" in timeline
    assert "- **page-oncall** skipped: condition false" in timeline  # never started


def test_markdown_step_table() -> None:
    md = render_markdown(make_result())
    rows = [line for line in md.splitlines() if line.startswith("| 2 |")]
    assert len(rows) == 1
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", rows[0])[1:-1]]
    assert len(cells) == 9
    assert cells[2].startswith("**succeeded**") and "approved by alice" in cells[2]
    assert cells[3:6] == ["2", "3m20s", "4m20s"]
    assert cells[6] == "`iam:UpdateAccessKey`, `iam:ListAccessKeys`"
    assert cells[7] == "undo `aws.iam.reactivate_access_key`"
    assert cells[8] == "fail 1x: ThrottlingException"
    assert "**irreversible**: a ticket cannot be deleted" in md
    assert "| 4 |" in md and "not started" in md


def test_markdown_team_notes_have_blank_bullets() -> None:
    md = render_markdown(make_result())
    notes = md.split("## Team notes", 1)[1]
    assert "### What went well\n\n- \n- \n- \n" in notes
    assert "### Action items (owner, due date)" in notes


def test_markdown_escapes_attacker_text() -> None:
    md = render_markdown(evil_result())
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    elements = parse(rendered)
    tags = {tag for tag, _ in elements.tags}
    assert "script" not in tags and "img" not in tags
    assert "<script>" not in rendered
    text = "".join(elements.text)
    assert "<script>alert(1)</script>" in text
    assert "${{ alert.title }}" in text
    # every table row keeps its column count: `|` and newlines cannot split a cell
    for table in re.findall(r"<table>.*?</table>", rendered, re.S):
        widths = {
            row.count("<td") + row.count("<th") for row in re.findall(r"<tr>.*?</tr>", table, re.S)
        }
        assert len(widths) == 1, table
    for line in md.splitlines():
        if line.startswith("| "):
            assert line.endswith(" |")


_NASTY = st.text(
    alphabet=st.sampled_from(list("<>&\"'`|\\*_[]()#!-=${} \n\rab/:;")) | st.characters(),
    max_size=40,
)
_ALLOWED_HTML = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "section", "footer",
    "h1", "h2", "h3", "p", "span", "strong", "code", "dl", "dt", "dd", "ul", "ol", "li",
    "table", "thead", "tbody", "tr", "th", "td", "br", "div", "a",
    "svg", "desc", "rect", "line", "text", "g", "circle", "polygon", "path",
}  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=_NASTY, note=_NASTY, reason=_NASTY, step_id=_NASTY)
def test_any_text_stays_text(title: str, note: str, reason: str, step_id: str) -> None:
    result = make_result(title=title)
    result.markers.append(Marker(at=30.0, kind=note or "note", text=note, step=step_id))
    result.steps[2].reason = reason
    result.steps[2].id = step_id
    result.expectations[1].detail = reason
    result.alert["title"] = title
    elements = parse(render_html(result))
    assert {tag for tag, _ in elements.tags} <= _ALLOWED_HTML
    assert not any(name.startswith("on") for _, attrs in elements.tags for name in attrs)
    rendered = MarkdownIt("commonmark").enable("table").render(render_markdown(result))
    md_elements = parse(rendered)
    assert {tag for tag, _ in md_elements.tags} <= _ALLOWED_HTML
    for table in re.findall(r"<table>.*?</table>", rendered, re.S):
        widths = {r.count("<td") + r.count("<th") for r in re.findall(r"<tr>.*?</tr>", table, re.S)}
        assert len(widths) == 1, table


# --- files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stem"),
    [
        ("out/report", "out/report"),
        ("out/report.md", "out/report"),
        ("out/report.html", "out/report"),
        ("out/report.HTML", "out/report"),
        ("out/report.v2", "out/report.v2"),
        ("out/", "out/leaked-key-jira-down"),
    ],
)
def test_report_paths(given: str, stem: str) -> None:
    assert report_paths(given, make_result()) == (f"{stem}.md", f"{stem}.html")


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    result = make_result()
    target = tmp_path / "deep" / "er" / "drill.md"
    written = write_report(result, str(target))
    assert written == [str(tmp_path / "deep/er/drill.md"), str(tmp_path / "deep/er/drill.html")]
    assert Path(written[0]).read_text(encoding="utf-8") == render_markdown(result)
    assert Path(written[1]).read_text(encoding="utf-8") == render_html(result)
    # an existing folder gets files named after the scenario
    assert write_report(result, str(tmp_path)) == [
        str(tmp_path / "leaked-key-jira-down.md"),
        str(tmp_path / "leaked-key-jira-down.html"),
    ]
