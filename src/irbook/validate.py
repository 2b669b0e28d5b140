"""The validator: every playbook and drill scenario in some files or folders.

`irbook validate` prints what `validate()` finds; `irbook list`, `docs`, `serve` and
`deploy` read their playbooks through it too, so that each accepts exactly the files
`irbook validate` accepts. Each playbook file is checked by `checked.check_file`, which
the content cache wraps: on a full cache hit no YAML is parsed, and neither the loader
nor the drill loader (pydantic, the models) is imported; those two imports are the only
ones made inside functions, for that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from irbook.checked import FileResult, check_file, find_playbook, resolve_playbook
from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.files import default_playbook_dirs, playbook_files

if TYPE_CHECKING:
    from irbook.loader import Loaded
    from irbook.source import Source

__all__ = [
    "FileResult",
    "Report",
    "check_file",
    "check_policy",
    "duplicate_id",
    "find_playbook",
    "resolve_playbook",
    "validate",
]


class Report:
    def __init__(self, files: list[FileResult], diagnostics: list[Diagnostic]) -> None:
        self.files = files
        self.diagnostics = diagnostics

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def valid(self) -> list[FileResult]:
        return [
            f for f in self.files if f.playbook_id is not None or f.drill_id is not None or f.policy
        ]

    def playbooks(self) -> list[Loaded]:
        """The valid playbooks (drills left out), in file order; duplicates of an id are
        errors and not among them."""
        return [f.load() for f in self.files if f.playbook_id is not None]


def duplicate_id(
    pid: str, at: Location, first_path: str, first_line: int, kind: str = "playbook"
) -> Diagnostic:
    """Ids are unique across the folders: the second one is the error."""
    return Diagnostic(at, f"duplicate {kind} id '{pid}' (also in {first_path}:{first_line})")


def _other_source(path: str) -> Source | None:
    """The file, read, when it is a drill scenario or a policy (`kind: Drill | Policy`)."""
    from irbook.source import load_file  # only for files that failed as playbooks

    try:
        source = load_file(path)
    except IrbookError:
        return None
    data = source.data
    return source if isinstance(data, dict) and data.get("kind") in ("Drill", "Policy") else None


def check_policy(source: Source) -> FileResult:
    """A policy file (irbook-policy.yaml), checked as every command loads it."""
    from irbook.policy import policy_from_source

    try:
        policy_from_source(source)
    except LoadFailed as exc:
        return FileResult(source.path, None, list(exc.diagnostics))
    return FileResult(source.path, None, [], policy=True)


def _in_playbook_folder(path: str) -> bool:
    real = os.path.realpath(path)
    for folder in default_playbook_dirs():
        top = os.path.realpath(folder)
        if os.path.isdir(top) and os.path.commonpath([real, top]) == top:
            return True
    return False


def check_drill(source: Source) -> FileResult:
    """A drill scenario, checked as `irbook drill` checks it before running.

    Never cached: whether it holds depends on the playbook and alert files it names.
    """
    from irbook.drill.scenario import scenario_from_source  # behind the cache, as checked.py

    path = source.path
    try:
        loaded = scenario_from_source(source)
    except LoadFailed as exc:
        return FileResult(path, None, list(exc.diagnostics))
    except IrbookError as exc:
        return FileResult(path, None, [Diagnostic(exc.location or Location(path), exc.message)])
    # The playbook's own warnings belong to the playbook's file, not to this one.
    return FileResult(
        path,
        None,
        [],
        loaded.source.at(("metadata", "id")),
        drill_id=loaded.drill.metadata.id,
    )


def validate(paths: Iterable[str]) -> Report:
    """Every playbook, drill scenario (`kind: Drill`) and policy (`kind: Policy`) named
    by `paths`."""
    files: list[FileResult] = []
    diags: list[Diagnostic] = []
    said: set[Diagnostic] = set()  # an alert file two drills share is reported once
    seen: dict[tuple[str, str], FileResult] = {}
    for path in playbook_files(paths):
        result = check_file(path)
        # A drill fails as a playbook (its kind); only then is it parsed again, so a
        # cached valid playbook still costs no parsing.
        other = _other_source(path) if result.playbook_id is None else None
        drill = other if other is not None and other.data.get("kind") == "Drill" else None
        if other is not None and drill is None:
            result = check_policy(other)
        if drill is not None:
            result = check_drill(drill)
            if _in_playbook_folder(path):
                message = (
                    "a drill scenario in a playbook folder (irbook serve, list and deploy"
                    " read every file there as a playbook): keep drills elsewhere, such as"
                    " runbooks/drills/"
                )
                result.diagnostics.insert(0, Diagnostic(drill.at(("kind",)), message))
                result.drill_id = None
        files.append(result)
        for diag in result.diagnostics:
            if diag not in said:
                said.add(diag)
                diags.append(diag)
        kind, ident = (
            ("playbook", result.playbook_id)
            if result.playbook_id is not None
            else ("drill", result.drill_id)
        )
        if ident is None:
            continue
        if (kind, ident) in seen:
            first = seen[(kind, ident)]
            line = first.id_location.line if first.id_location else 0
            at = result.id_location or Location(path)
            diags.append(duplicate_id(ident, at, first.path, line, kind))
            result.playbook_id = result.drill_id = None
            continue
        seen[(kind, ident)] = result
    return Report(files, diags)
