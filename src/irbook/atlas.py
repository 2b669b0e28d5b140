"""The MITRE ATLAS technique list shipped in irbook/data/atlas.json (see ATLAS-LICENSE.txt).

Read on first use only: `irbook validate` on playbooks without `metadata.atlas` never
opens the file, and one read serves every playbook after that.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from dataclasses import dataclass

DATA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "atlas.json")


@dataclass(frozen=True)
class Tactic:
    id: str
    name: str


@dataclass(frozen=True)
class Technique:
    id: str
    name: str
    tactics: tuple[str, ...]
    parent: str | None = None


@dataclass(frozen=True)
class Atlas:
    version: str
    tactics: tuple[Tactic, ...]
    techniques: dict[str, Technique]

    def unknown_message(self, technique_id: str) -> str:
        """The validation message for an id the shipped list does not have."""
        parent = technique_id.rsplit(".", 1)[0] if technique_id.count(".") == 2 else ""
        if parent in self.techniques:  # a sub-technique ATLAS does not define
            close = [parent]
        else:
            close = difflib.get_close_matches(technique_id, sorted(self.techniques), n=1)
        hint = ""
        if close:
            hint = f" (did you mean '{close[0]}', {self.techniques[close[0]].name}?)"
        return f"unknown MITRE ATLAS technique '{technique_id}' (ATLAS {self.version}){hint}"

    def label(self, technique_id: str) -> str:
        """`AML.T0012 Valid Accounts`, or the bare id when it is not in the list."""
        found = self.techniques.get(technique_id)
        return f"{technique_id} {found.name}" if found else technique_id


@functools.cache
def atlas() -> Atlas:
    with open(DATA_PATH, encoding="utf-8") as handle:
        data = json.load(handle)
    return Atlas(
        version=str(data["atlas_version"]),
        tactics=tuple(Tactic(t["id"], t["name"]) for t in data["tactics"]),
        techniques={
            t["id"]: Technique(t["id"], t["name"], tuple(t["tactics"]), t.get("parent"))
            for t in data["techniques"]
        },
    )
