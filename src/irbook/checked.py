"""One playbook file, checked once: `load_playbook` behind the content cache (cache.py).

On a cache hit nothing heavier than hashing runs: no YAML parsing and no pydantic
validation. A miss keeps what it loaded, so a caller that needs the playbook itself
(plan, list, serve, deploy) does not load the file a second time.

`irbook validate` (irbook.validate) checks folders of these; the drill loader and every
command that takes a PLAYBOOK id find it here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from irbook import cache
from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.files import MAX_FILE_BYTES, PLAYBOOK_SUFFIXES, default_playbook_dirs, playbook_files

if TYPE_CHECKING:
    from irbook.loader import Loaded

__all__ = [
    "FileResult",
    "by_id",
    "check_file",
    "find_playbook",
    "is_path",
    "resolve_playbook",
]


class FileResult:
    """What validation says of one file: a valid playbook's id (or a drill's), and the
    problems found, errors and warnings."""

    def __init__(
        self,
        path: str,
        playbook_id: str | None,  # None when the file is invalid (or a drill)
        diagnostics: list[Diagnostic],
        id_location: Location | None = None,
        drill_id: str | None = None,  # a valid drill scenario's id
        loaded: Loaded | None = None,  # the playbook, when this process loaded it
        policy: bool = False,  # a valid policy file (irbook.policy)
    ) -> None:
        self.path = path
        self.playbook_id = playbook_id
        self.diagnostics = diagnostics
        self.id_location = id_location
        self.drill_id = drill_id
        self.policy = policy
        self._loaded = loaded

    def load(self) -> Loaded:
        """The valid playbook; read from the file again only after a cache hit (it raises
        LoadFailed if the file stopped being valid since)."""
        if self.playbook_id is None:
            raise IrbookError(f"{self.path}: not a valid playbook")
        if self._loaded is None:
            self._loaded = _load(self.path)
        return self._loaded


def _load(path: str) -> Loaded:
    """`load_playbook`, imported here and not at the top: that import is what a cache hit
    saves (pydantic and the models, three times a cached `irbook validate`'s whole run)."""
    from irbook.loader import load_playbook

    return load_playbook(path)


def _diag_from(data: dict[str, Any]) -> Diagnostic:
    return Diagnostic(
        Location(data["path"], data["line"], data["col"]),
        data["message"],
        severity=data["severity"],
        code=data["code"],
        level=data["level"] or "",
        step=data["step"],
    )


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it cannot be a cache hit (too big, unreadable)."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            return None
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None


def _from_cache(path: str, hit: object) -> FileResult | None:
    if not isinstance(hit, dict):
        return None
    loc = hit.get("id_location")
    return FileResult(
        path,
        hit.get("id"),
        [_diag_from(d) for d in hit.get("diagnostics", [])],
        Location(*loc) if loc else None,
    )


def check_file(path: str) -> FileResult:
    """One playbook file, validated (every error and lint warning in it), cached by
    content when the cache is on (IRBOOK_NO_CACHE unset)."""
    raw = read_bytes(path) if cache.enabled() else None
    entry = cache.key("validate", path, raw) if raw is not None else None
    if entry is not None:
        hit = _from_cache(path, cache.get("validate", entry))
        if hit is not None:
            return hit
    try:
        loaded = _load(path)
    except LoadFailed as exc:
        result = FileResult(path, None, list(exc.diagnostics))
    else:
        result = FileResult(
            path,
            loaded.playbook.metadata.id,
            list(loaded.warnings),
            loaded.source.at(("metadata", "id")),
            loaded=loaded,
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


def is_path(ref: str) -> bool:
    """Whether a PLAYBOOK argument names a file rather than an id."""
    return os.sep in ref or ref.endswith(PLAYBOOK_SUFFIXES) or os.path.isfile(ref)


def by_id(ref: str) -> FileResult:
    """The checked file of the valid playbook with this id, in the playbook folders."""
    folders = default_playbook_dirs()
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for path in playbook_files([folder]):
            raw = read_bytes(path)
            if raw is None or ref.encode() not in raw:
                continue  # cheap: the id must appear in the text
            result = check_file(path)
            if result.playbook_id == ref:
                return result
    raise IrbookError(
        f"no playbook with id '{ref}' in {', '.join(folders)} (give a path or set IRBOOK_PLAYBOOKS)"
    )


def find_playbook(ref: str) -> str:
    """The path of a playbook given by path or by id (in $IRBOOK_PLAYBOOKS or playbooks/)."""
    return ref if is_path(ref) else by_id(ref).path


def resolve_playbook(ref: str) -> Loaded:
    """The playbook given by path or by id, loaded; raises LoadFailed with its errors.

    Looking one up by id validates it already: that load is the one returned."""
    return _load(ref) if is_path(ref) else by_id(ref).load()
