"""The lint rules. Each looks at a valid playbook and yields warnings with a level.

Levels: high (can hurt production or the investigation), medium (weakens the
response), low (style or intent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from irbook import expr
from irbook.errors import Diagnostic
from irbook.model import Playbook, Step
from irbook.needs import upstream_of
from irbook.registry import ActionSpec, Registry
from irbook.source import Source

Rule = Callable[["_Ctx"], Iterator[Diagnostic]]


class _Ctx:
    def __init__(self, playbook: Playbook, source: Source, registry: Registry) -> None:
        self.playbook = playbook
        self.source = source
        self.steps = {s.id: s for s in playbook.steps}
        self.index = {s.id: i for i, s in enumerate(playbook.steps)}
        self.specs: dict[str, ActionSpec] = {}
        for step in playbook.steps:
            spec = registry.find(step.action)
            if spec is not None:
                self.specs[step.id] = spec
        self.upstream = upstream_of(self.steps)

    def warn(
        self, step: Step | None, field: str, code: str, level: str, message: str
    ) -> Diagnostic:
        loc: tuple[str | int, ...] = ("steps", self.index[step.id], field) if step else (field,)
        return Diagnostic(
            self.source.at(loc, key=True),
            message,
            severity="warning",
            code=code,
            level=level,
            step=step.id if step else None,
        )

    def gated(self, step: Step) -> bool:
        """True when a human decision stands between an alert and this step.

        A step that can only run after an approval gate upstream (a step with
        approval.required, or a core.approval checkpoint) is covered by that decision.
        """
        for sid in (step.id, *self.upstream.get(step.id, ())):
            other = self.steps[sid]
            spec = self.specs.get(sid)
            if other.needs_approval or (spec is not None and spec.key == "core.approval"):
                return True
        return False


def mutate_without_approval(ctx: _Ctx) -> Iterator[Diagnostic]:
    if not ctx.playbook.triggers:
        return
    for step in ctx.playbook.steps:
        spec = ctx.specs.get(step.id)
        if spec is not None and spec.effect == "mutate" and not ctx.gated(step):
            yield ctx.warn(
                step,
                "action",
                "mutate-without-approval",
                "high",
                f"step '{step.id}' changes production ({spec.key}) in a playbook that alerts "
                "can start, with no approval: add approval: {required: true}",
            )


def irreversible_without_evidence(ctx: _Ctx) -> Iterator[Diagnostic]:
    for step in ctx.playbook.steps:
        spec = ctx.specs.get(step.id)
        if spec is None or spec.irreversible is None or spec.evidence:
            continue  # an evidence copy kept under lock is the snapshot, not a risk to it
        if spec.no_evidence is not None:
            continue  # it destroys nothing a snapshot could keep (rotate_secret)
        if not any(ctx.specs.get(up) and ctx.specs[up].evidence for up in ctx.upstream[step.id]):
            yield ctx.warn(
                step,
                "action",
                "irreversible-without-evidence",
                "high",
                f"step '{step.id}' is irreversible ({spec.irreversible}) and no evidence "
                "snapshot runs before it: add a snapshot step to its needs",
            )


def approve_on_timeout(ctx: _Ctx) -> Iterator[Diagnostic]:
    """An approval that approves itself when nobody answers is no gate for a change."""
    for step in ctx.playbook.steps:
        spec = ctx.specs.get(step.id)
        gate = step.approval
        if spec is None or gate is None or gate.on_timeout != "approve":
            continue
        if spec.effect == "mutate" or spec.irreversible is not None:
            kind = "is irreversible" if spec.irreversible is not None else "changes production"
            yield ctx.warn(
                step,
                "approval",
                "approve-on-timeout",
                "high",
                f"step '{step.id}' {kind} ({spec.key}) and runs unapproved when its approval "
                f"times out: use on_timeout: reject",
            )


def prefer_gentler(ctx: _Ctx) -> Iterator[Diagnostic]:
    for step in ctx.playbook.steps:
        spec = ctx.specs.get(step.id)
        if spec is not None and spec.prefer:
            yield ctx.warn(
                step,
                "action",
                "prefer-reversible",
                "medium",
                f"step '{step.id}' uses {spec.key}; prefer {spec.prefer}, which can be undone",
            )


def no_notification(ctx: _Ctx) -> Iterator[Diagnostic]:
    if not any(spec.effect == "notify" for spec in ctx.specs.values()):
        yield ctx.warn(
            None,
            "steps",
            "no-notification",
            "medium",
            "no step notifies anyone (Slack, Jira, a webhook): responders will not know "
            "this playbook ran",
        )


def if_always_false(ctx: _Ctx) -> Iterator[Diagnostic]:
    for step in ctx.playbook.steps:
        cond = step.if_
        constant, value = False, None
        if isinstance(cond, bool):
            constant, value = True, cond
        elif isinstance(cond, str) and expr.is_template(cond):
            template = expr.parse_template(cond)
            if template.whole is not None:
                constant, value = expr.constant_value(template.whole)
        if constant and not expr.truthy(value):
            yield ctx.warn(
                step,
                "if",
                "if-always-false",
                "medium",
                f"step '{step.id}' never runs: its 'if' is always false",
            )


# Fields of an alert resource that normalizers leave empty when the source has none
# (GuardDuty names an access key by id, with no ARN).
OPTIONAL_RESOURCE_FIELDS = ("arn", "name", "region")


def _resource_filter(for_each: object) -> tuple[str, ...] | None:
    """The fields a `for_each` over alert.resources guarantees: () for the plain list,
    ('arn',) for `where(alert.resources, 'arn')` and ('type',) for
    `where(alert.resources, 'type', 'AwsEc2Instance')`; None when it is not over them."""
    if not (isinstance(for_each, str) and expr.is_template(for_each)):
        return None
    whole = expr.parse_template(for_each).whole
    kept: tuple[str, ...] = ()
    if (
        isinstance(whole, expr.Call)
        and whole.func == "where"
        and len(whole.args) in (2, 3)
        and isinstance(whole.args[1], expr.Literal)
        and isinstance(whole.args[1].value, str)
    ):
        equals = whole.args[2] if len(whole.args) == 3 else None
        set_for_sure = equals is None or (
            isinstance(equals, expr.Literal) and equals.value not in (None, "")
        )
        kept = (whole.args[1].value,) if set_for_sure else ()
        whole = whole.args[0]
    if whole is None or isinstance(whole, expr.Call):
        return None
    paths = [r.path for r in expr.references(whole)]
    return kept if paths == [("alert", "resources")] else None


def _item_fields(value: object) -> set[str]:
    """The `item.<field>` names the templates in a step's `with` read."""
    fields: set[str] = set()
    todo = [value]
    while todo:
        cur = todo.pop()
        if isinstance(cur, dict):
            todo.extend(cur.values())
        elif isinstance(cur, list):
            todo.extend(cur)
        elif isinstance(cur, str) and expr.is_template(cur):
            for node, _ in expr.parse_template(cur).expressions:
                for ref in expr.references(node):
                    if len(ref.path) >= 2 and ref.path[0] == "item":
                        fields.add(ref.path[1])
    return fields


def optional_resource_field(ctx: _Ctx) -> Iterator[Diagnostic]:
    for step in ctx.playbook.steps:
        kept = _resource_filter(step.for_each)
        if kept is None:
            continue
        for field in sorted(_item_fields(step.with_) & set(OPTIONAL_RESOURCE_FIELDS)):
            if field in kept:
                continue
            yield ctx.warn(
                step,
                "for_each",
                "optional-resource-field",
                "medium",
                f"step '{step.id}' reads item.{field} of every alert resource, but a resource "
                f"may have no {field} (GuardDuty's access keys have no ARN): "
                f"for_each: ${{{{ where(alert.resources, '{field}') }}}}",
            )


RULES: dict[str, Rule] = {
    "mutate-without-approval": mutate_without_approval,
    "irreversible-without-evidence": irreversible_without_evidence,
    "approve-on-timeout": approve_on_timeout,
    "prefer-reversible": prefer_gentler,
    "no-notification": no_notification,
    "if-always-false": if_always_false,
    "optional-resource-field": optional_resource_field,
}


def lint_playbook(playbook: Playbook, source: Source, registry: Registry) -> list[Diagnostic]:
    ctx = _Ctx(playbook, source, registry)
    out: list[Diagnostic] = []
    for rule in RULES.values():
        out.extend(rule(ctx))
    out = _acknowledged(ctx, out)
    return sorted(out, key=lambda d: (d.location.line, d.location.col))


def _acknowledged(ctx: _Ctx, found: list[Diagnostic]) -> list[Diagnostic]:
    """Drop the warnings the playbook acknowledges (`acknowledge: [{rule, reason}]` on a
    step, or in metadata for the whole playbook); an acknowledgement naming an unknown
    rule, or one with nothing to acknowledge, is a warning itself, so none goes stale."""
    playbook_wide = {ack.rule for ack in ctx.playbook.metadata.acknowledge}
    kept: list[Diagnostic] = []
    used: set[tuple[str | None, str]] = set()
    for diag in found:
        step = ctx.steps.get(diag.step) if diag.step else None
        if step is not None and any(ack.rule == diag.code for ack in step.acknowledge):
            used.add((step.id, diag.code))
        elif diag.code in playbook_wide:
            used.add((None, diag.code))
        else:
            kept.append(diag)
    places: list[tuple[Step | None, int, str]] = [
        (None, n, ack.rule) for n, ack in enumerate(ctx.playbook.metadata.acknowledge)
    ]
    for step in ctx.playbook.steps:
        places += [(step, n, ack.rule) for n, ack in enumerate(step.acknowledge)]
    for step, n, rule in places:
        loc: tuple[str | int, ...] = (
            ("steps", ctx.index[step.id], "acknowledge", n, "rule")
            if step is not None
            else ("metadata", "acknowledge", n, "rule")
        )
        where = f"step '{step.id}'" if step is not None else "the playbook"
        if rule not in RULES:
            message = f"{where} acknowledges unknown lint rule '{rule}' (rules: {', '.join(RULES)})"
            code = "unknown-acknowledgement"
        elif (step.id if step is not None else None, rule) not in used:
            message = f"{where} acknowledges '{rule}', which finds nothing here: remove it"
            code = "unused-acknowledgement"
        else:
            continue
        kept.append(
            Diagnostic(
                ctx.source.at(loc),
                message,
                severity="warning",
                code=code,
                level="low",
                step=step.id if step is not None else None,
            )
        )
    return kept
