"""The least-privilege IAM policy a playbook needs, from its actions' declared permissions.

Only AWS actions count (Slack scopes and Jira rights are not IAM). Compensations are
included in their own statements, since `rollback: auto` and `irbook rollback` run
them with the same credentials.
"""

from __future__ import annotations

from typing import Any

from irbook.model import Playbook
from irbook.registry import REGISTRY, Registry


def _sid(prefix: str, service: str) -> str:
    return prefix + "".join(part.capitalize() for part in service.replace("_", "-").split("-"))


def policy_for(
    playbook: Playbook, registry: Registry = REGISTRY, *, rollback: bool = True
) -> dict[str, Any]:
    """An IAM policy document: one Allow statement per service, actions sorted."""
    forward: dict[str, set[str]] = {}
    undo: dict[str, set[str]] = {}
    for step in playbook.steps:
        spec = registry.get(step.action)
        if spec.key.startswith("aws."):
            for perm in spec.permissions:
                forward.setdefault(perm.split(":", 1)[0], set()).add(perm)
        if rollback and spec.compensation:
            comp = registry.get(spec.compensation)
            if comp.key.startswith("aws."):
                for perm in comp.permissions:
                    undo.setdefault(perm.split(":", 1)[0], set()).add(perm)
    statements: list[dict[str, Any]] = []
    for service in sorted(forward):
        statements.append(
            {
                "Sid": _sid("Irbook", service),
                "Effect": "Allow",
                "Action": sorted(forward[service]),
                "Resource": "*",
            }
        )
    for service in sorted(undo):
        extra = sorted(undo[service] - forward.get(service, set()))
        if extra:
            statements.append(
                {
                    "Sid": _sid("IrbookRollback", service),
                    "Effect": "Allow",
                    "Action": extra,
                    "Resource": "*",
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}
