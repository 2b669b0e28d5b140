"""Which AWS clients `irbook run` builds before the flow run starts (aws_clients)."""

from __future__ import annotations

from pathlib import Path

from irbook.loader import load_playbook
from irbook.plan import build_plan
from irbook_flows.start import aws_clients

BOOK = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: clients, title: Clients}
aws: {region: eu-west-1}
steps:
  - id: revoke
    action: aws.iam.deactivate_access_key
    with: {access_key_id: AKIAIOSFODNN7EXAMPLE, user_name: ml-svc}
  - id: block
    action: aws.s3.block_public_access
    aws: {region: us-east-2}
    with: {bucket: models-bucket}
  - id: elsewhere
    action: aws.iam.quarantine_principal
    aws: {role_arn: "arn:aws:iam::210987654321:role/responder"}
    with: {user_name: ml-svc}
  - id: never
    action: aws.iam.quarantine_principal
    if: "${{ false }}"
    with: {role_name: other}
  - id: note
    action: core.note
    with: {text: done}
"""


def test_the_planned_calls_services_in_the_steps_regions_without_role_steps(
    tmp_path: Path,
) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(BOOK)
    plan = build_plan(load_playbook(str(path)).playbook, None, {})
    # a role's clients need its credentials (assumed when its step runs); a skipped
    # step and a non-AWS step need none
    assert aws_clients(plan) == [("iam", "eu-west-1"), ("s3", "us-east-2")]


def test_a_step_that_only_sets_a_region_acts_through_the_playbooks_role(
    tmp_path: Path,
) -> None:
    """Playbook.aws_for (tests/irbook/test_aws_target.py has its cases): `block` sets only
    a region, so it too assumes the playbook's role when it runs; no client before."""
    path = tmp_path / "where.yaml"
    path.write_text(
        BOOK.replace(
            "aws: {region: eu-west-1}",
            'aws: {region: eu-west-1, role_arn: "arn:aws:iam::123456789012:role/ir",'
            " external_id: ext-1}",
        )
    )
    book = load_playbook(str(path)).playbook
    plan = build_plan(book, None, {})
    assert aws_clients(plan) == []  # every step acts through a role
