"""A step's `aws: {role_arn, external_id}` acts in another account through an assumed role."""

from __future__ import annotations

import json

from irbook_actions.clients import LiveClients


def test_with_role_assumes_the_role_for_every_client(moto_url: str) -> None:
    base = LiveClients(region="us-east-1", aws_endpoint_url=moto_url)
    base.aws("iam").create_role(
        RoleName="irbook-responder",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    role_arn = "arn:aws:iam::123456789012:role/irbook-responder"
    other = base.with_role(role_arn, external_id="ir-ext-1", region="eu-west-1")
    who = other.aws("sts").get_caller_identity()
    assert ":assumed-role/irbook-responder/irbook" in who["Arn"]
    assert base.aws("sts").get_caller_identity()["Arn"] != who["Arn"]
    assert other.aws("s3").meta.region_name == "eu-west-1"
    # a step timeout keeps the role
    assert (
        ":assumed-role/irbook-responder/"
        in other.with_timeout(5).aws("sts").get_caller_identity()["Arn"]
    )


def test_steps_share_one_factory_per_role_and_per_timeout(moto_url: str) -> None:
    """A role is assumed once a run, not once a step; a step timeout's clients share the
    run's credentials (one session, under one lock: boto3 sessions are not thread-safe)."""
    base = LiveClients(region="us-east-1", aws_endpoint_url=moto_url)
    role_arn = "arn:aws:iam::123456789012:role/irbook-responder"
    other = base.with_role(role_arn, external_id="ir-ext-1", region="eu-west-1")
    assert base.with_role(role_arn, external_id="ir-ext-1", region="eu-west-1") is other
    assert base.with_role(role_arn, external_id="ir-ext-2", region="eu-west-1") is not other
    assert base.with_role(role_arn, external_id="ir-ext-1") is not other  # another region
    short = base.with_timeout(5)
    assert base.with_timeout(5.0) is short
    assert base.with_timeout(6) is not short
    assert short.aws("iam") is short.aws("iam")
    assert short.aws("iam") is not base.aws("iam")  # its own read timeout and attempts
    assert short.aws("iam").meta.config.read_timeout == 5.0
    assert short._boto_session() is base._boto_session()


def test_prepare_builds_the_clients_a_step_then_reuses(moto_url: str) -> None:
    base = LiveClients(region="us-east-1", aws_endpoint_url=moto_url)
    base.prepare([("iam", None), ("s3", "eu-west-1"), ("no-such-service", None)]).join(60)
    iam = base._aws[("iam", None)]
    assert base.aws("iam") is iam
    assert base.aws("s3", region="eu-west-1").meta.region_name == "eu-west-1"
    assert ("no-such-service", None) not in base._aws  # left for the step to report
