"""Where playbooks are and how big they may be; no YAML or pydantic import here."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from irbook.errors import IrbookError

MAX_FILE_BYTES = 1024 * 1024
PLAYBOOK_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 10_000


def playbook_files(paths: Iterable[str]) -> Iterator[str]:
    """The playbook files named by paths (files as given; folders walked, sorted)."""
    count = 0
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.endswith(PLAYBOOK_SUFFIXES) and not name.startswith("."):
                        count += 1
                        if count > MAX_FILES:
                            raise IrbookError(f"{path}: more than {MAX_FILES} playbook files")
                        yield os.path.join(folder, name)
        else:
            yield path


def default_playbook_dirs() -> list[str]:
    env = os.environ.get("IRBOOK_PLAYBOOKS")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return ["playbooks"]
