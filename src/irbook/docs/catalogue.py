"""The README's playbook catalogue: one table row per shipped playbook, generated.

The table stands between two markers in README.md; `irbook docs` rewrites what is between
them (and nothing else), `irbook docs --check` fails when it is stale. A README without
the markers is left alone: the catalogue is for repositories that ask for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from irbook.docs.runbook import code, prose, runbook_name, table
from irbook.errors import IrbookError
from irbook.loader import Loaded
from irbook.model import Playbook, Trigger
from irbook.registry import REGISTRY, Registry

START = "<!-- catalogue:start -->"
END = "<!-- catalogue:end -->"
README = "README.md"


def _trigger(trigger: Trigger) -> str:
    """`guardduty`: its finding types (globs as written), or "any alert"."""
    origin = trigger.format or trigger.source or "any source"
    if trigger.source is not None and trigger.format is not None:
        origin = f"{trigger.source} ({trigger.format})"
    types = trigger.match.get("type")
    if types is None:
        shown = "any type" if trigger.match else "any alert"
    else:
        listed = types if isinstance(types, list) else [types]
        shown = ", ".join(code(str(t)) for t in listed)
    return f"{code(origin)}: {shown}"


def _triggers(playbook: Playbook) -> str:
    if not playbook.triggers:
        return "started by hand"
    return "<br>".join(_trigger(t) for t in playbook.triggers)


def _mutations(playbook: Playbook, registry: Registry) -> str:
    """The steps that change something, in the order written, approval gates marked."""
    shown = []
    for step in playbook.steps:
        spec = registry.find(step.action)
        if spec is None or spec.effect != "mutate":
            continue
        gate = " (after approval)" if step.needs_approval else ""
        shown.append(f"{code(step.action)}{gate}")
    return ", ".join(shown) if shown else "changes nothing (reads and notifies)"


def _atlas(playbook: Playbook) -> str:
    from irbook.atlas import atlas

    known = atlas()
    ids = playbook.metadata.atlas
    return "<br>".join(prose(known.label(i), line_start=False) for i in ids) if ids else "none"


def render_catalogue(
    items: Iterable[Loaded], registry: Registry = REGISTRY, runbooks: str = "runbooks"
) -> str:
    """The block between the markers, markers included; rows sorted by playbook id."""
    rows = []
    for item in sorted(items, key=lambda i: i.playbook.metadata.id):
        pb = item.playbook
        link = f"{runbooks}/{runbook_name(pb)}"
        title = prose(pb.metadata.title, line_start=False)
        incident = f"[{title}]({link})<br>{code(pb.metadata.id)}"
        rows.append([incident, _triggers(pb), _mutations(pb, registry), _atlas(pb)])
    lines = [
        START,
        "<!-- generated from playbooks/ by `irbook docs`: edit the playbooks, not this table -->",
        "",
        *table(["incident", "trigger", "what it changes", "MITRE ATLAS"], rows),
        "",
        END,
    ]
    return "\n".join(lines)


def with_catalogue(readme: str, catalogue: str, path: str = README) -> str:
    """The README with its catalogue block replaced; an error when the markers are wrong."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 and end < 0:
        raise IrbookError(f"{path}: no {START} ... {END} block to write the catalogue into")
    if start < 0 or end < start or readme.count(START) != 1 or readme.count(END) != 1:
        raise IrbookError(f"{path}: the catalogue needs one {START} before one {END}")
    return readme[:start] + catalogue + readme[end + len(END) :]


def has_markers(readme: str) -> bool:
    return START in readme or END in readme
