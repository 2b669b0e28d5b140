"""The MITRE ATLAS coverage page (runbooks/atlas.md): which playbooks answer which
technique, by tactic, so the gaps in the response library show at a glance."""

from __future__ import annotations

from collections.abc import Iterable

from irbook.docs.runbook import GENERATOR, prose, runbook_name, table
from irbook.loader import Loaded

COVERAGE_NAME = "atlas.md"


def _link(item: Loaded) -> str:
    meta = item.playbook.metadata
    return f"[{prose(meta.title, line_start=False)}]({runbook_name(item.playbook)})"


def render_coverage(items: Iterable[Loaded]) -> str:
    """The whole page as Markdown, ending in one newline; `items` sorted by playbook id."""
    from irbook.atlas import atlas

    known = atlas()
    books = list(items)
    covering: dict[str, list[Loaded]] = {}
    for item in books:
        for technique_id in dict.fromkeys(item.playbook.metadata.atlas):
            covering.setdefault(technique_id, []).append(item)
    covered = sum(1 for t in known.techniques if t in covering)

    out = ["# MITRE ATLAS coverage", ""]
    out += [
        f"> Generated from the playbooks' `metadata.atlas` by `{GENERATOR}`: edit the "
        f"playbooks and run `{GENERATOR}` again rather than editing this file.",
        "",
        f"Techniques of MITRE ATLAS {known.version} (shipped with irbook, Apache-2.0, see "
        f"`src/irbook/data/ATLAS-LICENSE.txt`): {covered} of {len(known.techniques)} "
        f"answered by at least one of {len(books)} playbook(s).",
        "",
        "## Playbooks",
        "",
    ]
    rows = [
        (
            _link(item),
            item.playbook.metadata.severity,
            ", ".join(prose(known.label(t), line_start=False) for t in item.playbook.metadata.atlas)
            or "none",
        )
        for item in books
    ]
    out += table(("playbook", "severity", "ATLAS techniques"), rows)
    out.append("")
    out += ["## Techniques by tactic", ""]
    for tactic in known.tactics:
        out += [f"### {prose(tactic.name, line_start=False)} ({tactic.id})", ""]
        tactic_rows = [
            (
                prose(known.label(technique.id), line_start=False),
                ", ".join(_link(item) for item in covering.get(technique.id, [])) or "none",
            )
            for technique in known.techniques.values()
            if tactic.id in technique.tactics
        ]
        out += table(("technique", "playbooks"), tactic_rows)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
