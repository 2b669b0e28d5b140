"""AWS actions: revoke credentials, isolate endpoints, snapshot evidence, rotate secrets.

Importing this package registers every `aws.*` action (the `aws` entry point of the
`irbook.actions` group). No module here imports boto3 or botocore at import time.
"""

from irbook_actions.aws import (
    apigateway,
    awslambda,
    bedrock,
    cloudtrail,
    cognito,
    ec2,
    iam,
    s3,
    sagemaker,
    secrets,
    sns,
    tagging,
    wafv2,
)

__all__ = [
    "apigateway",
    "awslambda",
    "bedrock",
    "cloudtrail",
    "cognito",
    "ec2",
    "iam",
    "s3",
    "sagemaker",
    "secrets",
    "sns",
    "tagging",
    "wafv2",
]
