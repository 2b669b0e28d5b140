"""Where a step's AWS calls go (Playbook.aws_for): the one rule the engine's live calls,
the clients built before a run, `irbook iam-policy`, preflight and the runbook follow.

The region falls back field by field; the role and its external id travel together (the
step's when it sets role_arn, else the playbook's), so a step that only moves to another
region still assumes the playbook's role WITH the external id its trust policy asks for.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from irbook.model import Playbook
from irbook.model.playbook import AwsDestination

BOOK_ROLE = "arn:aws:iam::111122223333:role/ir"
STEP_ROLE = "arn:aws-cn:iam::210987654321:role/responder"


def book(top: dict[str, Any] | None, step: dict[str, Any] | None) -> Playbook:
    doc: dict[str, Any] = {
        "apiVersion": "irbook/v1",
        "kind": "Playbook",
        "metadata": {"id": "where", "title": "Where"},
        "steps": [{"id": "s", "action": "core.note", "with": {"text": "x"}}],
    }
    if top is not None:
        doc["aws"] = top
    if step is not None:
        doc["steps"][0]["aws"] = step
    return Playbook.model_validate(doc)


BOOK_AWS = {"region": "eu-west-1", "role_arn": BOOK_ROLE, "external_id": "book-ext"}


@pytest.mark.parametrize(
    ("top", "step", "expected"),
    [
        pytest.param(None, None, AwsDestination(), id="no aws anywhere: AWS's defaults"),
        pytest.param(
            BOOK_AWS, None, AwsDestination("eu-west-1", BOOK_ROLE, "book-ext"), id="playbook's"
        ),
        pytest.param(
            BOOK_AWS,
            {"region": "us-east-2"},
            AwsDestination("us-east-2", BOOK_ROLE, "book-ext"),
            id="step's region keeps the playbook's role and its external id",
        ),
        pytest.param(
            BOOK_AWS,
            {"role_arn": STEP_ROLE},
            AwsDestination("eu-west-1", STEP_ROLE, None),
            id="step's role: none of the playbook's external id, the playbook's region",
        ),
        pytest.param(
            BOOK_AWS,
            {"region": "cn-north-1", "role_arn": STEP_ROLE, "external_id": "step-ext"},
            AwsDestination("cn-north-1", STEP_ROLE, "step-ext"),
            id="step's whole aws",
        ),
        pytest.param(
            {"region": "eu-west-1"},
            {"role_arn": STEP_ROLE, "external_id": "step-ext"},
            AwsDestination("eu-west-1", STEP_ROLE, "step-ext"),
            id="step's role under a playbook region",
        ),
        pytest.param(
            None,
            {"region": "us-east-2"},
            AwsDestination("us-east-2"),
            id="step's region, no role anywhere",
        ),
        pytest.param({"region": "eu-west-1"}, {}, AwsDestination("eu-west-1"), id="empty step aws"),
    ],
)
def test_region_falls_back_alone_role_and_external_id_together(
    top: dict[str, Any] | None, step: dict[str, Any] | None, expected: AwsDestination
) -> None:
    playbook = book(top, step)
    assert playbook.aws_for(playbook.steps[0]) == expected


def test_the_roles_account_and_partition() -> None:
    assert (AwsDestination(role_arn=STEP_ROLE).account, AwsDestination().account) == (
        "210987654321",
        None,
    )
    assert (AwsDestination(role_arn=STEP_ROLE).partition, AwsDestination().partition) == (
        "aws-cn",
        None,
    )


@pytest.mark.parametrize(
    ("top", "step"),
    [
        ({"region": "eu-west-1", "external_id": "ext"}, None),
        # under a playbook role: which role it would go with is the ambiguity refused
        ({"role_arn": BOOK_ROLE, "external_id": "book-ext"}, {"external_id": "step-ext"}),
    ],
)
def test_an_external_id_without_its_role_is_refused(
    top: dict[str, Any], step: dict[str, Any] | None
) -> None:
    with pytest.raises(ValidationError, match="external_id without role_arn"):
        book(top, step)
