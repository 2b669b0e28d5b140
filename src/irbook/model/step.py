"""A playbook step: one action, its parameters, and how it is gated and retried."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from irbook.model.base import ID_PATTERN, Duration, Strict


class Approval(Strict):
    required: bool = True
    timeout: Duration = 15 * 60.0
    on_timeout: Literal["reject", "approve"] = "reject"
    approvers: list[str] = Field(default_factory=list)  # empty: anyone allowed to approve
    prompt: str = ""


class Acknowledgement(Strict):
    """A lint warning the playbook's authors weighed and accepted: `irbook validate` no
    longer reports it (nor fails on it with --strict), and the runbook shows the reason."""

    rule: str = Field(
        pattern=r"^[a-z][a-z0-9-]*$",
        description="The lint rule's code, as validate prints it: irreversible-without-evidence",
    )
    reason: str = Field(
        min_length=1, description="Why the warning does not apply here; shown in the runbook"
    )


class AwsTarget(Strict):
    """Where AWS calls go: a region and, for other accounts, a role to assume."""

    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    external_id: str | None = None


class Step(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    if_: str | bool | None = Field(default=None, alias="if")
    for_each: str | list[Any] | None = None
    approval: Approval | None = None
    retries: int = Field(default=0, ge=0, le=10)
    retry_delay: Duration = 2.0
    timeout: Duration | None = None
    on_failure: Literal["abort", "continue"] | None = None  # None: the action's default
    aws: AwsTarget | None = None
    acknowledge: list[Acknowledgement] = Field(default_factory=list)

    @property
    def needs_approval(self) -> bool:
        return self.approval is not None and self.approval.required
