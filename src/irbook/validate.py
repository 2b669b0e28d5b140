"""Validation of many files, with results cached by content (see cache.py).

On a full cache hit nothing heavier than hashing runs: no YAML parsing and no pydantic
model building, which is most of a cold `irbook validate`'s time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from irbook import cache
from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.files import MAX_FILE_BYTES, default_playbook_dirs, playbook_files

if TYPE_CHECKING:
    from irbook.source import Source


class FileResult:
    def __init__(
        self,
        path: str,
        playbook_id: str | None,  # None when the file is invalid (or a drill)
        diagnostics: list[Diagnostic],
        id_location: Location | None = None,
        drill_id: str | None = None,  # a valid drill scenario's id
        policy: bool = False,  # a valid policy file
    ) -> None:
        self.path = path
        self.playbook_id = playbook_id
        self.diagnostics = diagnostics
        self.id_location = id_location
        self.drill_id = drill_id
        self.policy = policy


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


def _diag_from(data: dict[str, Any]) -> Diagnostic:
    return Diagnostic(
        Location(data["path"], data["line"], data["col"]),
        data["message"],
        severity=data["severity"],
        code=data["code"],
        level=data["level"] or "",
        step=data["step"],
    )


def _read(path: str) -> bytes | None:
    """The file's bytes, or None when it cannot be a cache hit (too big, unreadable)."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None


def check_file(path: str) -> FileResult:
    raw = _read(path)
    entry = cache.key("validate", path, raw) if raw is not None and cache.enabled() else None
    if entry is not None:
        hit = cache.get("validate", entry)
        if isinstance(hit, dict):
            loc = hit.get("id_location")
            return FileResult(
                path,
                hit.get("id"),
                [_diag_from(d) for d in hit.get("diagnostics", [])],
                Location(*loc) if loc else None,
            )
    from irbook.loader import load_playbook

    try:
        loaded = load_playbook(path)
    except LoadFailed as exc:
        result = FileResult(path, None, list(exc.diagnostics))
    else:
        result = FileResult(
            path,
            loaded.playbook.metadata.id,
            list(loaded.warnings),
            loaded.source.at(("metadata", "id")),
        )
    if entry is not None:
        loc = result.id_location
        cache.put(
            "validate",
            entry,
            {
                "id": result.playbook_id,
                "id_location": [loc.path, loc.line, loc.col] if loc else None,
                "diagnostics": [d.as_dict() for d in result.diagnostics],
            },
        )
    return result


def duplicate_id(
    pid: str, at: Location, first_path: str, first_line: int, kind: str = "playbook"
) -> Diagnostic:
    """Ids are unique across the folders: the second one is the error."""
    return Diagnostic(at, f"duplicate {kind} id '{pid}' (also in {first_path}:{first_line})")


def _other_source(path: str) -> Source | None:
    """The file, read, when it is a drill scenario or a policy (`kind: Drill | Policy`)."""
    from irbook.source import load_file

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
    return FileResult(source.path, None, [], drill_id=None, policy=True)


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
    from irbook.drill.scenario import scenario_from_source

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


def find_playbook(ref: str) -> str:
    """The path of a playbook given by path or by id (in $IRBOOK_PLAYBOOKS or playbooks/)."""
    from irbook.files import PLAYBOOK_SUFFIXES

    if os.sep in ref or ref.endswith(PLAYBOOK_SUFFIXES) or os.path.isfile(ref):
        return ref
    folders = default_playbook_dirs()
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for path in playbook_files([folder]):
            raw = _read(path)
            if raw is None or ref.encode() not in raw:
                continue  # cheap: the id must appear in the text
            if check_file(path).playbook_id == ref:
                return path
    raise IrbookError(
        f"no playbook with id '{ref}' in {', '.join(folders)} (give a path or set IRBOOK_PLAYBOOKS)"
    )
