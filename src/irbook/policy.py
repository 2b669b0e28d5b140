"""Who may start, approve and roll back which playbooks: the policy file and its one check.

`irbook-policy.yaml` (`kind: Policy`, path from IRBOOK_POLICY or the receiver's
`policy:`; the environment wins) names people by the identities irbook can see (OS or
SSO user names, e-mail addresses, Slack user ids, names typed in the Prefect UI), groups
of them (Slack user groups included), and roles granting `run`, `run-live`, `approve`,
`approve-irreversible`, `rollback` and `drill`, scoped by playbook id glob, severity and
mode. Webhook sources are principals too, as `source:NAME`.

Every path that starts, decides or undoes a run asks `decide()` (a grant) or `judge()`
(a vote on an approval gate): the CLI, Slack buttons, a Prefect resume checked by the
flow itself, webhook starts, rollbacks and drills. This module is pure: no Prefect, no
network; Slack group membership comes in as a function.

Without a policy file irbook keeps its behaviour from before policies (a step's own
`approvers` list, anyone else) and says once per command that no policy is in force.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.source import Path, Source, load_file

GRANTS = ("run", "run-live", "approve", "approve-irreversible", "rollback", "drill")
Grant = Literal["run", "run-live", "approve", "approve-irreversible", "rollback", "drill"]
Severity = Literal["low", "medium", "high", "critical"]
Mode = Literal["live", "dry-run"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
MODES: tuple[Mode, ...] = ("live", "dry-run")
NAME = r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"
ENV = "IRBOOK_POLICY"
USER_ENV = "IRBOOK_USER"
NOTICE = "irbook: note: no policy in force"  # said once per command without a policy

# Where an identity comes from, and so what it proves (README, "Who may do what").
SOURCES = ("cli", "slack", "prefect", "webhook", "drill")

Members = Callable[[str], set[str]]  # Slack user group id -> its members' user ids


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, strict=True)


class Person(_Strict):
    """One person, by every identity irbook can see them under."""

    name: str = Field(pattern=NAME, description="How roles and groups name this person")
    users: list[str] = Field(
        default_factory=list,
        description="OS user names, or SSO user names a wrapper sets in IRBOOK_USER (CLI)",
    )
    emails: list[str] = Field(
        default_factory=list, description="E-mail addresses (an SSO wrapper's IRBOOK_USER)"
    )
    slack: list[str] = Field(
        default_factory=list,
        description="Slack user ids (U..., W...): the signed id of a button press",
    )
    prefect: list[str] = Field(
        default_factory=list,
        description="Names accepted from a Prefect UI or API resume: proves only that the"
        " caller reached the Prefect API (leave empty to refuse those resumes)",
    )


class Group(_Strict):
    name: str = Field(pattern=NAME, description="How roles name this group")
    members: list[str] = Field(default_factory=list, description="People, by name")
    slack_groups: list[str] = Field(
        default_factory=list,
        description="Slack user group ids (S...) whose members belong to this group",
    )


class GrantRule(_Strict):
    """What a role allows, and where: every listed scope must hold."""

    allow: list[Grant] = Field(min_length=1, description=f"Grants: {', '.join(GRANTS)}")
    playbooks: list[str] = Field(
        default_factory=lambda: ["*"], min_length=1, description="Playbook id globs (aws-*)"
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(SEVERITIES),
        min_length=1,
        description="The playbook's severities this covers (default: all)",
    )
    modes: list[Mode] = Field(
        default_factory=lambda: list(MODES),
        min_length=1,
        description="live, dry-run (default: both)",
    )


class Role(_Strict):
    name: str = Field(pattern=NAME)
    members: list[str] = Field(
        default_factory=list,
        description="People and groups by name; webhook sources as source:NAME",
    )
    grants: list[GrantRule] = Field(min_length=1)


class Policy(_Strict):
    api_version: Literal["irbook/v1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    people: list[Person] = Field(default_factory=list)
    groups: list[Group] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)

    # -- who is this identity ----------------------------------------------------------

    def person(self, name: str) -> Person | None:
        return next((p for p in self.people if p.name == name), None)

    def principal(self, identity: Identity) -> str | None:
        """The person (or `source:NAME`) an identity is, or None for a stranger."""
        if identity.source == "webhook":
            return f"source:{identity.name}"
        for person in self.people:
            if _is(person, identity):
                return person.name
        return None

    def roles_of(self, principal: str, identity: Identity, members: Members | None) -> list[Role]:
        groups = {g.name for g in self.groups if principal in g.members}
        if identity.source == "slack" and members is not None:
            for group in self.groups:
                if group.name not in groups and _in_slack_group(group, identity.name, members):
                    groups.add(group.name)
        held = {principal, *groups}
        return [r for r in self.roles if held & set(r.members)]


def _is(person: Person, identity: Identity) -> bool:
    name = identity.name
    if identity.source == "cli":
        return name in person.users or name.lower() in (e.lower() for e in person.emails)
    if identity.source == "slack":
        return name in person.slack
    if identity.source == "prefect":
        return name in person.prefect
    # a bare name (a drill's scripted approver): a person's name, or one of their identities
    return name == person.name or name in person.users or name in person.slack


def _in_slack_group(group: Group, user_id: str, members: Members) -> bool:
    for slack_group in group.slack_groups:
        try:
            if user_id in members(slack_group):
                return True
        except Exception:  # Slack unreachable: nobody gets in through a group
            return False
    return False


@dataclass(frozen=True)
class Identity:
    """Who asks, and how irbook knows: `cli:alice`, `slack:U0ALICE`, `webhook:guardduty`."""

    source: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        source, sep, name = text.partition(":")
        if sep and source in SOURCES:
            return cls(source, name)
        return cls("", text)  # a bare name: `--by alice` without a policy, a drill's `by`

    def __str__(self) -> str:
        return f"{self.source}:{self.name}" if self.source else self.name


@dataclass(frozen=True)
class Scope:
    """What is acted on: the playbook, its severity, the run's mode."""

    playbook_id: str
    severity: str
    mode: str  # live | dry-run


@dataclass(frozen=True)
class Ruling:
    allowed: bool
    grant: str
    who: str  # the identity as text
    principal: str | None = None  # the person (or source:NAME) it resolved to
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "grant": self.grant,
            "by": self.who,
            "principal": self.principal,
            "reason": self.reason,
        }


def run_grant(mode: str) -> str:
    return "run-live" if mode == "live" else "run"


def decide(
    policy: Policy | None,
    identity: Identity,
    grant: str,
    scope: Scope,
    members: Members | None = None,
) -> Ruling:
    """May `identity` use `grant` on `scope`? Without a policy: yes (today's behaviour)."""
    who = str(identity)
    if policy is None:
        return Ruling(True, grant, who, None, "no policy in force")
    principal = policy.principal(identity)
    if principal is None:
        return Ruling(
            False, grant, who, None, f"{who} is nobody in the policy, so has no {grant} grant"
        )
    for role in policy.roles_of(principal, identity, members):
        for rule in role.grants:
            if _covers(rule, grant, scope):
                return Ruling(True, grant, who, principal, f"role {role.name}")
    return Ruling(
        False,
        grant,
        who,
        principal,
        f"{principal} ({who}) has no {grant} grant for playbook {scope.playbook_id}"
        f" ({scope.severity}, {scope.mode})",
    )


def _covers(rule: GrantRule, grant: str, scope: Scope) -> bool:
    if grant not in rule.allow and not (
        grant == "approve" and "approve-irreversible" in rule.allow
    ):
        return False
    return (
        any(fnmatch.fnmatchcase(scope.playbook_id, glob) for glob in rule.playbooks)
        and scope.severity in rule.severities
        and scope.mode in rule.modes
    )


# -- approval gates --------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """What an approval gate asks for, written on the waiting step for every path to read."""

    grant: str  # approve | approve-irreversible
    min_approvers: int = 1
    separate_duties: bool = False
    approvers: tuple[str, ...] = ()  # the step's own list (names or Slack ids); empty: any

    def as_dict(self) -> dict[str, Any]:
        return {
            "grant": self.grant,
            "min_approvers": self.min_approvers,
            "separate_duties": self.separate_duties,
            "approvers": list(self.approvers),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gate:
        return cls(
            str(data.get("grant") or "approve"),
            int(data.get("min_approvers") or 1),
            bool(data.get("separate_duties")),
            tuple(data.get("approvers") or ()),
        )


def gate_for(
    *,
    irreversible: bool,
    min_approvers: int,
    separate_duties: bool | None,
    approvers: Iterable[str],
    policy_in_force: bool,
) -> Gate:
    """The gate of a step. Separation of duties defaults on for irreversible steps when a
    policy is in force (without one irbook keeps its behaviour from before policies)."""
    separate = separate_duties
    if separate is None:
        separate = irreversible and policy_in_force
    return Gate(
        "approve-irreversible" if irreversible else "approve",
        max(1, min_approvers),
        separate,
        tuple(approvers),
    )


@dataclass(frozen=True)
class Vote:
    who: str  # identity text
    principal: str  # the person it counts for (the identity text without a policy)


@dataclass(frozen=True)
class Verdict:
    """The answer to one approval attempt."""

    outcome: Literal["approved", "rejected", "recorded", "refused"]
    ruling: Ruling
    reason: str = ""
    waiting_for: int = 0  # recorded: approvals still needed

    @property
    def changes_run(self) -> bool:
        return self.outcome != "refused"


def _same_person(policy: Policy | None, a: Identity, b: Identity) -> bool:
    if policy is not None:
        pa, pb = policy.principal(a), policy.principal(b)
        if pa is not None and pa == pb:
            return True
    return a == b or (a.name == b.name and "" in (a.source, b.source))


def judge(
    policy: Policy | None,
    gate: Gate,
    identity: Identity,
    approved: bool,
    scope: Scope,
    *,
    started_by: str,
    votes: list[Vote],
    members: Members | None = None,
) -> Verdict:
    """One approve or reject attempt on a gate, given the approvals counted so far.

    A rejection needs the same grant as an approval, and one granted rejection ends the
    gate. An approval counts once per person; the gate opens at `min_approvers`
    distinct people. Refused attempts change nothing."""
    ruling = decide(policy, identity, gate.grant, scope, members)
    verb = "approve" if approved else "reject"
    if not ruling.allowed:
        return Verdict("refused", ruling, f"{ruling.reason}; may not {verb}")
    if gate.approvers:
        names = {identity.name, str(identity), ruling.principal}
        if not names & set(gate.approvers):
            return Verdict(
                "refused",
                ruling,
                f"{identity} is not among the step's approvers ({', '.join(gate.approvers)})",
            )
    if gate.separate_duties and _same_person(policy, identity, Identity.parse(started_by)):
        return Verdict(
            "refused",
            ruling,
            f"{identity} started this run and may not {verb} it (separation of duties)",
        )
    if not approved:
        return Verdict("rejected", ruling)
    principal = ruling.principal or str(identity)
    if any(v.principal == principal for v in votes):
        return Verdict(
            "refused",
            ruling,
            f"{principal} approved already; this step needs {gate.min_approvers}"
            " different approvers",
        )
    left = gate.min_approvers - len(votes) - 1
    if left > 0:
        return Verdict("recorded", ruling, f"waiting for {left} more approver(s)", left)
    return Verdict("approved", ruling)


def judge_waiting(
    policy: Policy | None,
    gate: Mapping[str, Any],
    identity: Identity,
    approved: bool,
    *,
    started_by: str,
    members: Members | None = None,
) -> Verdict | None:
    """An attempt on a waiting step judged from the gate its row records, before the run
    is resumed (`irbook approve`, Slack): no vote is counted here, the run's flow counts
    them. None when the gate recorded no scope (no policy was in force)."""
    if "scope" not in gate:
        return None
    return judge(
        policy,
        Gate.from_dict(dict(gate)),
        identity,
        approved,
        Scope(**gate["scope"]),
        started_by=started_by,
        votes=[],
        members=members,
    )


def verdict_event(
    verdict: Verdict, *, by: str, approved: bool, **extra: Any
) -> tuple[str, dict[str, Any]]:
    """The audit event of a judged attempt: its kind (approval-refused, -recorded or
    -decided) and detail (who, the principal and grant, the outcome and why)."""
    kind = {"refused": "approval-refused", "recorded": "approval-recorded"}.get(
        verdict.outcome, "approval-decided"
    )
    detail = {
        "by": by,
        "principal": verdict.ruling.principal,
        "grant": verdict.ruling.grant,
        "approved": approved,
        "outcome": verdict.outcome,
        "reason": verdict.reason,
        **extra,
    }
    return kind, detail


# -- the file --------------------------------------------------------------------------


@dataclass
class LoadedPolicy:
    policy: Policy
    source: Source
    path: str = field(default="")


def load_policy(path: str) -> LoadedPolicy:
    """Load and check a policy file; LoadFailed with every located error in it."""
    try:
        source = load_file(path, kind="policy")
    except IrbookError as exc:
        raise LoadFailed([Diagnostic(exc.location or Location(path), exc.message)]) from None
    return policy_from_source(source)


def policy_from_source(source: Source) -> LoadedPolicy:
    from irbook.loader import pydantic_diagnostics

    raw = source.data
    if not isinstance(raw, dict):
        message = "expected a policy mapping at the top level"
        raise LoadFailed([Diagnostic(source.at(()), message)])
    diags: list[Diagnostic] = []
    model: Policy | None = None
    try:
        model = Policy.model_validate(raw)
    except ValidationError as exc:
        diags.extend(pydantic_diagnostics(exc, Policy, source))
    diags.extend(_check(raw, source))
    if diags or model is None:
        diags.sort(key=lambda d: (d.location.line, d.location.col))
        raise LoadFailed(list(dict.fromkeys(diags)))
    return LoadedPolicy(model, source, source.path)


def _entries(raw: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    items = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _names(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value)] if isinstance(value, list) else []


def _check(raw: Any, source: Source) -> list[Diagnostic]:
    """What the structure cannot say: unique names, members that exist, one owner per id."""
    out: list[Diagnostic] = []

    def error(loc: Path, message: str) -> None:
        out.append(Diagnostic(source.at(loc), message))

    defined: dict[str, str] = {}  # name -> "person" | "group"
    for key, kind in (("people", "person"), ("groups", "group")):
        for index, item in _entries(raw, key):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if name in defined:
                said = (
                    "is defined twice"
                    if defined[name] == kind
                    else f"is the name of a {defined[name]} too"
                )
                error((key, index, "name"), f"{kind} '{name}' {said}")
            else:
                defined[name] = kind
    owners: dict[tuple[str, str], str] = {}
    for index, person in _entries(raw, "people"):
        for key in ("users", "emails", "slack", "prefect"):
            for j, ident in _names(person.get(key)):
                if not isinstance(ident, str):
                    continue
                norm = ident.lower() if key == "emails" else ident
                owner = owners.get((key, norm))
                name = str(person.get("name"))
                if owner is not None and owner != name:
                    error(
                        ("people", index, key, j),
                        f"{key} '{ident}' belongs to both {owner} and {name}: an identity"
                        " must name one person",
                    )
                owners[(key, norm)] = name
                if key == "slack" and ident[:1] not in ("U", "W"):
                    error(("people", index, key, j), f"'{ident}' is not a Slack user id (U...)")
    people = {n for n, k in defined.items() if k == "person"}
    for index, group in _entries(raw, "groups"):
        for j, member in _names(group.get("members")):
            if isinstance(member, str) and member not in people:
                hint = " (a group; groups do not nest)" if member in defined else ""
                error(("groups", index, "members", j), f"no person '{member}'{hint}")
        for j, ident in _names(group.get("slack_groups")):
            if isinstance(ident, str) and not ident.startswith("S"):
                error(
                    ("groups", index, "slack_groups", j),
                    f"'{ident}' is not a Slack user group id (S...)",
                )
    roles: set[str] = set()
    for index, role in _entries(raw, "roles"):
        name = role.get("name")
        if isinstance(name, str):
            if name in roles:
                error(("roles", index, "name"), f"role '{name}' is defined twice")
            roles.add(name)
        for j, member in _names(role.get("members")):
            if not isinstance(member, str) or member.startswith("source:"):
                continue
            if member not in defined:
                error(
                    ("roles", index, "members", j),
                    f"no person or group '{member}' (webhook sources are source:NAME)",
                )
    return out


# -- the policy in force ---------------------------------------------------------------

_ANNOUNCED: list[bool] = []
_CACHE: dict[str, tuple[float, Policy]] = {}


def policy_path(config_path: str | None = None) -> str | None:
    """IRBOOK_POLICY, else the receiver configuration's `policy:`, else none."""
    return os.environ.get(ENV) or config_path or None


def active(config_path: str | None = None) -> Policy | None:
    """The policy in force for this command, or None (said once on stderr)."""
    path = policy_path(config_path)
    if not path:
        if not _ANNOUNCED:
            _ANNOUNCED.append(True)
            print(
                f"{NOTICE} ({ENV} is not set): anyone who can reach irbook may start,"
                " approve and roll back runs",
                file=sys.stderr,
            )
        return None
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = -1.0
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        loaded = load_policy(path)
    except LoadFailed as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        more = f" (and {len(exc.diagnostics) - 1} more; irbook validate {path})"
        raise IrbookError(
            f"policy file: {first.message if first else 'invalid'}"
            + (more if len(exc.diagnostics) > 1 else ""),
            first.location if first else Location(path),
        ) from None
    _CACHE[path] = (mtime, loaded.policy)
    return loaded.policy


def cli_identity() -> Identity:
    """The CLI's caller: IRBOOK_USER when a wrapper (SSO, sudo rules) sets it, else the OS
    user. Either proves only what the machine's login proves (README)."""
    name = os.environ.get(USER_ENV, "").strip()
    if not name:
        import getpass

        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
    return Identity("cli", name)


def policy_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://irbook.dev/schema/irbook-v1-policy.json"
    schema["title"] = "irbook policy (kind Policy, apiVersion irbook/v1)"
    return schema


__all__ = [
    "ENV",
    "GRANTS",
    "USER_ENV",
    "Gate",
    "Identity",
    "LoadedPolicy",
    "Policy",
    "Ruling",
    "Scope",
    "Verdict",
    "Vote",
    "active",
    "cli_identity",
    "decide",
    "gate_for",
    "judge",
    "judge_waiting",
    "load_policy",
    "policy_from_source",
    "policy_path",
    "policy_schema",
    "run_grant",
    "verdict_event",
]
