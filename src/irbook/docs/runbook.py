"""Render one playbook as a Markdown runbook a responder can follow by hand.

The output is a pure function of the playbook file and the registered actions: no
timestamps, no absolute paths, stable ordering. That is what lets CI compare the
committed runbooks with freshly rendered ones (`irbook docs --check`).

Playbook text is trusted (it is reviewed like code) but it is still escaped, so that a
`|` in a description cannot split a table row and a backtick cannot end a code span.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from irbook.errors import Diagnostic
from irbook.loader import Loaded
from irbook.model import Playbook, Step, Trigger
from irbook.model.base import format_duration
from irbook.registry import REGISTRY, ActionSpec, Registry

GENERATOR = "irbook docs"

_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "ne": "!="}
_PROSE_SPECIAL = re.compile(r"([\\`*_\[\]<>])")
_BLOCK_START = re.compile(r"^(\d*)([#>+=.)-])")
_BACKTICKS = re.compile(r"`+")


def runbook_name(playbook: Playbook) -> str:
    """The runbook's file name: one per playbook id."""
    return f"{playbook.metadata.id}.md"


# --- escaping ------------------------------------------------------------------------


def prose(text: str, *, line_start: bool = True) -> str:
    """One line of Markdown text: whitespace collapsed, inline syntax escaped."""
    flat = " ".join(text.split())
    escaped = _PROSE_SPECIAL.sub(r"\\\1", flat)
    start = _BLOCK_START.match(escaped) if line_start else None
    if start is not None:  # a leading '#', '>', '-' or '1.' must not start a block
        digits = start.group(1)
        escaped = digits + "\\" + escaped[len(digits) :]
    return escaped


def heading(text: str) -> str:
    """Heading text: a trailing run of '#' would be read as the heading's closing marks."""
    escaped = prose(text, line_start=False)  # after '# ', a leading '#' is already text
    if escaped.endswith("#"):
        stripped = escaped.rstrip("#")
        escaped = stripped + "\\" + escaped[len(stripped) :]
    return escaped


def paragraphs(text: str) -> str:
    """Free text as Markdown paragraphs (blank lines in the source separate them)."""
    parts = [prose(p) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return "\n\n".join(parts)


def code(text: str) -> str:
    """A code span that holds any text, backticks included (CommonMark rules)."""
    text = text.replace("\r\n", "\n").replace("\n", " ")
    if not text:
        return '`""`'
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each side when both are there: pad when the
    # content starts or ends with a backtick or a space, so what is shown is exact.
    if text.strip() and (text[0] in "` " or text[-1] in "` "):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def cell(text: str) -> str:
    """A GFM table cell: pipes escaped (inside code spans too), no line breaks."""
    return text.replace("\n", " ").replace("|", "\\|")


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = [cell(h) for h in header]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out.extend("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)
    return out


def literal(value: Any) -> str:
    """A parameter as written: strings raw (expressions included), the rest as JSON."""
    if isinstance(value, str) and value and "\n" not in value:
        return code(value)
    return code(json.dumps(value, ensure_ascii=False, sort_keys=False))


def codes(items: Iterable[str], empty: str = "none") -> str:
    shown = [code(i) for i in items]
    return ", ".join(shown) if shown else empty


# --- pieces ----------------------------------------------------------------------------


def _spec(registry: Registry, key: str | None) -> ActionSpec | None:
    return registry.find(key) if key else None


def _trigger(trigger: Trigger) -> str:
    conds: list[str] = []
    for path, cond in trigger.match.items():
        field = code(path)
        if isinstance(cond, dict):
            parts = [f"{field} {_OPS.get(op, op)} {literal(v)}" for op, v in cond.items()]
            conds.append(" and ".join(parts))
        elif isinstance(cond, list):
            conds.append(f"{field} is one of {', '.join(literal(c) for c in cond)}")
        elif isinstance(cond, str) and any(ch in cond for ch in "*?["):
            conds.append(f"{field} matches {literal(cond)}")
        else:
            conds.append(f"{field} is {literal(cond)}")
    where = " and ".join(conds) if conds else "any alert"
    if trigger.source is None:
        return f"- {code(trigger.format or '')} alerts from any source of that format where {where}"
    if trigger.format is not None:
        return f"- {code(trigger.source)} alerts (format {code(trigger.format)}) where {where}"
    return f"- {code(trigger.source)} alerts where {where}"


def _gates(step: Step) -> list[str]:
    gates: list[str] = []
    if step.needs_approval and step.approval is not None:
        gates.append(f"approval ({format_duration(step.approval.timeout)})")
    if step.if_ is not None:
        gates.append("if")
    if step.for_each is not None:
        gates.append("for each")
    return gates


def _on_failure(step: Step, spec: ActionSpec | None) -> str:
    if step.on_failure is not None:
        return step.on_failure
    if spec is not None:
        return f"{spec.on_failure} (the action's default)"
    return "abort"


def _step_section(number: int, step: Step, playbook: Playbook, registry: Registry) -> list[str]:
    spec = _spec(registry, step.action)
    title = f"### {number}. {code(step.id)}"
    if step.name:
        title += f": {heading(step.name)}"
    out = [title, ""]
    if step.description:
        out += [paragraphs(step.description), ""]
    action = f"- **Action:** {code(step.action)}"
    if spec is not None and spec.summary:
        action += f": {prose(spec.summary)}"
    out.append(action)
    out.append(f"- **Effect:** {spec.effect if spec else 'unknown'}")
    out.append(f"- **Needs:** {codes(step.needs, 'nothing (can start first)')}")
    if step.if_ is not None:
        cond = step.if_ if isinstance(step.if_, str) else json.dumps(step.if_)
        out.append(f"- **Runs only if:** {code(cond)}")
    if step.for_each is not None:
        out.append(f"- **Once for each item of:** {literal(step.for_each)}")
    if step.approval is not None and step.approval.required:
        appr = step.approval
        who = codes(appr.approvers) if appr.approvers else "anyone allowed to approve"
        text = (
            f"- **Approval:** required before it runs; waits {format_duration(appr.timeout)}, "
            f"then **{appr.on_timeout}s** on timeout; approvers: {who}"
        )
        out.append(text)
        if appr.prompt:
            out.append(f"  - Prompt: {prose(appr.prompt)}")
    else:
        out.append("- **Approval:** none")
    retry = f"{step.retries}"
    if step.retries:
        retry += f" ({format_duration(step.retry_delay)} apart)"
    timeout = format_duration(step.timeout) if step.timeout is not None else "none"
    out.append(
        f"- **Retries:** {retry}; **timeout:** {timeout}; **on failure:** {_on_failure(step, spec)}"
    )
    if (step.aws or playbook.aws) is not None and step.action.startswith("aws."):
        dest = playbook.aws_for(step)
        bits = [f"region {code(dest.region)}" if dest.region else "the default region"]
        if dest.role_arn:
            bits.append(f"as role {code(dest.role_arn)}")
        out.append(f"- **AWS target:** {', '.join(bits)}")
    perms = spec.permissions if spec else ()
    out.append(f"- **Permissions:** {codes(perms, 'none')}")
    out.append(f"- **Undo:** {_undo_text(spec, registry)}")
    for ack in step.acknowledge:
        out.append(f"- **Lint warning acknowledged:** {code(ack.rule)}: {prose(ack.reason)}")
    out.append("")
    if step.with_:
        out += ["Parameters:", ""]
        out += table(("name", "value"), ((code(k), literal(v)) for k, v in step.with_.items()))
    else:
        out.append("Parameters: none.")
    out.append("")
    return out


def _undo_text(spec: ActionSpec | None, registry: Registry) -> str:
    if spec is None or spec.effect != "mutate":
        return "nothing to undo (changes nothing)"
    if spec.compensation:
        return f"compensated by {code(spec.compensation)} (see How to roll back)"
    return f"**irreversible**: {prose(spec.irreversible or 'no compensation')}"


def _node_id(step_id: str, taken: set[str]) -> str:
    base = "s_" + re.sub(r"[^A-Za-z0-9]", "_", step_id)
    node, n = base, 2
    while node in taken:
        node, n = f"{base}_{n}", n + 1
    taken.add(node)
    return node


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def mermaid(order: list[Step], registry: Registry) -> list[str]:
    """The step graph: one node per step, one edge per need, gates on the edges."""
    taken: set[str] = {"start"}
    ids = {step.id: _node_id(step.id, taken) for step in order}
    out = ["```mermaid", "flowchart TD", '    start(["alert or manual start"])']
    approval: list[str] = []
    irreversible: list[str] = []
    for step in order:
        spec = _spec(registry, step.action)
        lines = [_mermaid_text(step.id), _mermaid_text(step.action)]
        gates = _gates(step)
        if gates:
            lines.append(_mermaid_text(", ".join(gates)))
        out.append(f'    {ids[step.id]}["{"<br/>".join(lines)}"]')
        if step.needs_approval:
            approval.append(ids[step.id])
        if spec is not None and spec.irreversible:
            irreversible.append(ids[step.id])
    for step in order:
        label = ", ".join(g for g in _gates(step) if not g.startswith("approval"))
        sources = [ids[n] for n in step.needs if n in ids] or ["start"]
        for src in sources:
            if step.if_ is not None:
                out.append(f"    {src} -.->|{label}| {ids[step.id]}")
            elif label:
                out.append(f"    {src} -->|{label}| {ids[step.id]}")
            else:
                out.append(f"    {src} --> {ids[step.id]}")
    if approval:
        out.append("    classDef approval stroke:#d97706,stroke-width:3px")
        out.append(f"    class {','.join(approval)} approval")
    if irreversible:
        out.append("    classDef irreversible stroke:#b91c1c,stroke-dasharray:4 2")
        out.append(f"    class {','.join(irreversible)} irreversible")
    out.append("```")
    return out


def _warning(diag: Diagnostic) -> str:
    where = f"line {diag.location.line}" if diag.location.line else "playbook"
    step = f", step {code(diag.step)}" if diag.step else ""
    level = f"{diag.level} " if diag.level else ""
    return f"- **{level}{code(diag.code)}** ({where}{step}): {prose(diag.message)}"


# --- the runbook ------------------------------------------------------------------------


def _atlas_labels(ids: list[str]) -> str:
    """`AML.T0012 Valid Accounts, ...`: the names, so a reader need not look the ids up."""
    from irbook.atlas import atlas

    known = atlas()
    return ", ".join(prose(known.label(i), line_start=False) for i in ids)


def render_runbook(
    loaded: Loaded, registry: Registry = REGISTRY, drills: Iterable[tuple[str, str]] = ()
) -> str:
    """The whole runbook as Markdown text, ending in one newline. `drills`: (path
    relative to the repository, title) of the tabletop scenarios of this playbook."""
    from irbook.iam import policy_for
    from irbook.plan import execution_order

    pb = loaded.playbook
    meta = pb.metadata
    order = execution_order(pb)
    source_name = loaded.path.replace("\\", "/").rsplit("/", 1)[-1]
    out: list[str] = [f"# {heading(meta.title)}", ""]
    out += [
        f"> Generated from {code(source_name)} by `{GENERATOR}`: edit the playbook and "
        f"run `{GENERATOR}` again rather than editing this file.",
        "",
    ]
    facts = [
        ("Playbook", code(meta.id)),
        ("Severity", meta.severity),
        ("Owner", prose(meta.owner) if meta.owner else "not set"),
        ("MITRE ATLAS", _atlas_labels(meta.atlas) if meta.atlas else "none"),
        ("Tags", codes(meta.tags)),
        ("Rollback", f"{pb.rollback}"),
    ]
    if pb.aws is not None:
        region = pb.aws.region or "default region"
        facts.append(
            (
                "AWS target",
                f"{region}" + (f", role {code(pb.aws.role_arn)}" if pb.aws.role_arn else ""),
            )
        )
    out += table(("field", "value"), facts)
    out.append("")

    out += ["## Purpose", ""]
    out += [paragraphs(meta.description) if meta.description.strip() else "No description.", ""]

    out += ["## Triggers", ""]
    if pb.triggers:
        out += [_trigger(t) for t in pb.triggers]
    else:
        out.append("None: this playbook is only started by hand.")
    out.append("")

    out += ["## Inputs", ""]
    if pb.inputs:
        rows = []
        for name, inp in pb.inputs.items():
            if inp.required:
                need = "required"
            elif inp.default is not None:
                need = f"default {literal(inp.default)}"
            else:
                need = "optional"
            origin = f"alert: {code(inp.from_)}" if inp.from_ else f"`--param {name}=...`"
            notes = [prose(inp.description)] if inp.description else []
            if inp.pattern:
                notes.append(f"must match {code(inp.pattern)}")
            if inp.enum is not None:
                notes.append("one of " + ", ".join(literal(v) for v in inp.enum))
            rows.append(
                (
                    code(name),
                    inp.type,
                    need,
                    origin,
                    "yes" if inp.secret else "no",
                    "; ".join(notes),
                )
            )
        out += table(("name", "type", "required / default", "from", "secret", "notes"), rows)
    else:
        out.append("None.")
    out.append("")

    out += ["## Steps", ""]
    out.append("In execution order (a step starts once everything it needs has finished).")
    out.append("")
    overview: list[tuple[str, ...]] = []
    for number, step in enumerate(order, 1):
        spec = _spec(registry, step.action)
        overview.append(
            (
                str(number),
                code(step.id),
                code(step.action),
                spec.effect if spec else "unknown",
                codes(step.needs, "-"),
                ", ".join(_gates(step)) or "-",
                prose(step.description or step.name),
            )
        )
    out += table(("#", "step", "action", "effect", "needs", "gates", "description"), overview)
    out.append("")
    out += mermaid(order, registry)
    out.append("")
    for number, step in enumerate(order, 1):
        out += _step_section(number, step, pb, registry)

    if pb.outputs:
        out += ["## Outputs", ""]
        out += table(("name", "value"), ((code(k), literal(v)) for k, v in pb.outputs.items()))
        out.append("")

    out += ["## How to roll back", ""]
    out.append(
        "Undo the changes newest first. With the automation, `irbook rollback RUN_ID` runs "
        "these compensations; by hand, apply each one to what its step changed (for a "
        "step that ran for each item, once per item)."
    )
    out.append("")
    undo_lines: list[str] = []
    for step in reversed(order):
        spec = _spec(registry, step.action)
        if spec is None or spec.effect != "mutate":
            continue
        if spec.compensation:
            comp = _spec(registry, spec.compensation)
            line = f"1. Undo {code(step.id)} with {code(spec.compensation)}"
            if comp is not None and comp.summary:
                line += f": {prose(comp.summary)}"
            undo_lines.append(line)
        else:
            undo_lines.append(
                f"1. **Cannot be undone:** {code(step.id)} ({code(step.action)}): "
                f"{prose(spec.irreversible or 'no compensation')}"
            )
    out += undo_lines or ["Nothing to roll back: no step changes anything."]
    out.append("")

    out += ["## Rehearse it", ""]
    rehearsals = sorted(drills)
    if rehearsals:
        out.append("Tabletop drills of this playbook (dry-run, scripted faults and approvers):")
        out.append("")
        out += [
            f"- {prose(title)}: `irbook drill {path} --report drill-report`"
            for path, title in rehearsals
        ]
    else:
        out.append("No drill yet: write one in `runbooks/drills/` (`kind: Drill`).")
    out.append("")

    out += ["## Lint warnings", ""]
    acks: list[tuple[str | None, Any]] = [(None, ack) for ack in meta.acknowledge]
    acks += [(step.id, ack) for step in pb.steps for ack in step.acknowledge]
    if loaded.warnings:
        out += [_warning(w) for w in loaded.warnings]
    elif not acks:
        out.append("None.")
    for step_id, ack in acks:
        where = f"step {code(step_id)}" if step_id else "whole playbook"
        out.append(f"- **acknowledged {code(ack.rule)}** ({where}): {prose(ack.reason)}")
    out.append("")

    out += ["## Least-privilege IAM policy", ""]
    out.append(
        "The AWS permissions of every step, and (in the `IrbookRollback` statements) "
        "those its compensations need. Permissions of other services (Slack, Jira) "
        "are listed with their steps. Resources are the ARN patterns the playbook names "
        "(`irbook iam-policy PLAYBOOK --alert FILE` scopes them to one alert's); "
        '`"Resource": "*"` stays where the Sid ends in `ApiNeedsAnyResource` (the API '
        "has no resource-level permissions) or `AnyResource` (known only when the step runs)."
    )
    out.append("")
    out += ["```json", json.dumps(policy_for(pb, registry), indent=2), "```"]
    return "\n".join(out).rstrip("\n") + "\n"
