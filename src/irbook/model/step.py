"""A playbook step: one action, its parameters, and how it is gated and retried."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from irbook.model.base import ID_PATTERN, Duration, Strict


class Approval(Strict):
    required: bool = Field(
        default=True, description="Whether the step waits for a decision (false: no gate)"
    )
    timeout: Duration = Field(
        default=15 * 60.0, description="How long to wait for a decision: 30s, 15m, 1h"
    )
    on_timeout: Literal["reject", "approve"] = Field(
        default="reject",
        description="What happens when nobody decides in time (approve is linted on changes)",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may decide (names or Slack user ids); empty: anyone allowed to approve",
    )
    prompt: str = Field(default="", description="The question approvers see")
    min_approvers: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Distinct approvers needed before the step runs (2: the two-person rule)",
    )
    separate_duties: bool | None = Field(
        default=None,
        description="Whoever started the run may not decide this step; default: on for"
        " irreversible steps when a policy is in force",
    )


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
    """Where AWS calls go: a region and, for other accounts, a role to assume. A step's
    region replaces the playbook's; a step's role_arn replaces the playbook's role and
    its external_id together, and a step without role_arn acts through the playbook's
    role with the playbook's external_id."""

    region: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
        description="AWS region of the calls (us-east-1); default: AWS_REGION",
    )
    role_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
        description="A role to assume first, for another account",
    )
    external_id: str | None = Field(
        default=None,
        description="The ExternalId the role's trust policy asks for (with role_arn only)",
    )

    @model_validator(mode="after")
    def _external_id_has_its_role(self) -> AwsTarget:
        # The external id is part of one role's trust policy: it goes with the role_arn
        # beside it. Alone (under a playbook's role, or for the steps' roles) it would
        # be sent with a role it was never written for, or silently not sent at all.
        if self.external_id is not None and self.role_arn is None:
            raise ValueError(
                "external_id without role_arn: an external id goes only with the role_arn "
                "in the same aws: block (add the role_arn it is for, or move it beside that)"
            )
        return self


class Step(Strict):
    id: str = Field(
        pattern=ID_PATTERN, description="Unique in the playbook; expressions read steps.ID"
    )
    name: str = Field(default="", description="A short title for runbooks and run records")
    description: str = Field(default="", description="Why the step is there, for runbooks")
    action: str = Field(description="The action's key (irbook actions lists them)")
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="The action's parameters; strings may hold ${{ expressions }}",
    )
    needs: list[str] = Field(
        default_factory=list, description="Steps that must end before this one starts"
    )
    if_: str | bool | None = Field(
        default=None, alias="if", description="Run only when this expression is true"
    )
    for_each: str | list[Any] | None = Field(
        default=None, description="Run once per item of this list (an expression); item is it"
    )
    approval: Approval | None = Field(
        default=None, description="A human decision the step waits for before it runs"
    )
    retries: int = Field(default=0, ge=0, le=10, description="Attempts after a failed one")
    retry_delay: Duration = Field(default=2.0, description="Wait between attempts: 2s, 1m")
    timeout: Duration | None = Field(
        default=None, description="Give up an attempt after this long: 30s, 5m"
    )
    on_failure: Literal["abort", "continue"] | None = Field(
        default=None,
        description="abort: the run fails; continue: the run goes on. Default: the action's",
    )
    aws: AwsTarget | None = Field(
        default=None, description="Region and role of this step's AWS calls"
    )
    acknowledge: list[Acknowledgement] = Field(
        default_factory=list, description="Lint warnings accepted for this step, with reasons"
    )

    @property
    def needs_approval(self) -> bool:
        return self.approval is not None and self.approval.required
