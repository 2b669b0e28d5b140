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
