"""A content-addressed cache for the pure offline commands (validate, plan).

Validation and planning are pure functions of the files' bytes, the arguments and the
code that judges them. Their results are kept under `$IRBOOK_HOME/cache`, keyed by a
hash of all of those, so that re-validating an unchanged tree does not pay pydantic's
start-up (about 50 ms of model building) again. The code fingerprint covers every
Python and JSON file (code, and data such as the ATLAS list) of irbook and of every
installed action package (path, size, mtime), so editing code, installing a plugin or
upgrading irbook invalidates every entry.

Set IRBOOK_NO_CACHE=1 (or pass --no-cache) to bypass it. Entries are written
atomically; an unreadable entry is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_fingerprint: str | None = None


def home() -> Path:
    """irbook's state directory: $IRBOOK_HOME, default ~/.irbook."""
    env = os.environ.get("IRBOOK_HOME")
    return Path(env) if env else Path.home() / ".irbook"


def enabled() -> bool:
    return os.environ.get("IRBOOK_NO_CACHE", "") in ("", "0")


def _package_dirs(found: dict[str, list[str]]) -> list[str]:
    """Folders of irbook and of every package that provides actions (`found`)."""
    import importlib.util

    dirs = [os.path.dirname(os.path.abspath(__file__))]
    tops = sorted({m.split(".")[0] for mods in found.values() for m in mods})
    for top in tops:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            dirs.extend(spec.submodule_search_locations)
        elif spec.origin:
            dirs.append(spec.origin)
    return dirs


def fingerprint() -> str:
    """A hash of the code that validates and plans, and of the installed action set."""
    global _fingerprint
    if _fingerprint is None:
        from irbook import __version__
        from irbook.plugins import ENTRY_POINT_GROUP, entry_points

        digest = hashlib.sha256()
        digest.update(f"{__version__}\0{sys.version}\0".encode())
        found = entry_points(ENTRY_POINT_GROUP)  # scanned once: it reads every dist-info
        digest.update(json.dumps(found, sort_keys=True).encode())
        for top in _package_dirs(found):
            if os.path.isfile(top):
                st = os.stat(top)
                digest.update(f"{top}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
                continue
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    if name.endswith((".py", ".json")):  # .json: data such as ATLAS
                        path = os.path.join(folder, name)
                        st = os.stat(path)
                        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        _fingerprint = digest.hexdigest()
    return _fingerprint


def key(*parts: str | bytes) -> str:
    digest = hashlib.sha256(fingerprint().encode())
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _path(kind: str, entry: str) -> Path:
    return home() / "cache" / kind / entry[:2] / f"{entry}.json"


def get(kind: str, entry: str) -> Any:
    if not enabled():
        return None
    try:
        with open(_path(kind, entry), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def put(kind: str, entry: str, value: Any) -> None:
    if not enabled():
        return
    path = _path(kind, entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs speed
