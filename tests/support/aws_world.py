"""Small pieces of an AI deployment in moto, built per test through the recording clients."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from .aws import RecordingClients

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def user(aws: RecordingClients, name: str = "ml-inference-svc") -> str:
    aws.aws("iam").create_user(UserName=name)
    return name


def access_key(aws: RecordingClients, user_name: str = "ml-inference-svc") -> str:
    return str(aws.aws("iam").create_access_key(UserName=user_name)["AccessKey"]["AccessKeyId"])


def key_status(aws: RecordingClients, user_name: str, key_id: str) -> str:
    keys = aws.aws("iam").list_access_keys(UserName=user_name)["AccessKeyMetadata"]
    return next(str(k["Status"]) for k in keys if k["AccessKeyId"] == key_id)


def role(aws: RecordingClients, name: str = "ml-inference-role") -> str:
    aws.aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)
    return name


def inline_policies(aws: RecordingClients, kind: str, name: str) -> dict[str, Any]:
    iam = aws.aws("iam")
    if kind == "user":
        names = iam.list_user_policies(UserName=name)["PolicyNames"]
        return {
            n: iam.get_user_policy(UserName=name, PolicyName=n)["PolicyDocument"] for n in names
        }
    names = iam.list_role_policies(RoleName=name)["PolicyNames"]
    return {n: iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"] for n in names}


def model_bucket(aws: RecordingClients, bucket: str = "models-bucket") -> str:
    aws.aws("s3").create_bucket(Bucket=bucket)
    return bucket


def public_access_block(aws: RecordingClients, bucket: str) -> dict[str, bool] | None:
    """A bucket's Block Public Access settings as S3 reports them; None when it has none."""
    from botocore.exceptions import ClientError

    try:
        answer = aws.aws("s3").get_public_access_block(Bucket=bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration":
            return None
        raise
    return dict(answer["PublicAccessBlockConfiguration"])


def evidence_bucket(aws: RecordingClients, name: str = "evidence-locker") -> str:
    """The usual case: the security team prepared an Object Lock bucket in advance."""
    aws.aws("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def endpoint(
    aws: RecordingClients,
    name: str = "fraud-scoring",
    *,
    bucket: str = "models-bucket",
    key: str = "fraud/model.tar.gz",
    body: bytes = b"weights v7\n" * 100,
    variants: int = 1,
) -> dict[str, Any]:
    """An endpoint serving one model whose artifact is an S3 object."""
    s3 = aws.aws("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    sm = aws.aws("sagemaker")
    sm.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker-execution",
        PrimaryContainer={
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/fraud:7",
            "ModelDataUrl": f"s3://{bucket}/{key}",
            "Environment": {"PROVIDER_API_KEY": "sk-live-do-not-keep"},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": f"v{i}",
                "ModelName": f"{name}-model",
                "InitialInstanceCount": i + 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": float(i + 1),
            }
            for i in range(variants)
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    return {"name": name, "config": f"{name}-config", "model": f"{name}-model", "body": body}


def variants(aws: RecordingClients, name: str) -> list[tuple[str, float, int]]:
    described = aws.aws("sagemaker").describe_endpoint(EndpointName=name)
    return [
        (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"])
        for v in described["ProductionVariants"]
    ]


def endpoint_names(aws: RecordingClients) -> list[str]:
    return [e["EndpointName"] for e in aws.aws("sagemaker").list_endpoints()["Endpoints"]]


def api_key(aws: RecordingClients) -> str:
    return str(aws.aws("apigateway").create_api_key(name="partner-key", enabled=True)["id"])


def stage(aws: RecordingClients) -> dict[str, str]:
    gateway = aws.aws("apigateway")
    api = gateway.create_rest_api(name="inference-api")["id"]
    root = gateway.get_resources(restApiId=api)["items"][0]["id"]
    gateway.put_method(restApiId=api, resourceId=root, httpMethod="POST", authorizationType="NONE")
    gateway.put_integration(restApiId=api, resourceId=root, httpMethod="POST", type="MOCK")
    gateway.create_deployment(restApiId=api, stageName="prod")
    return {"rest_api_id": api, "stage_name": "prod"}


def stage_limits(aws: RecordingClients, rest_api_id: str, stage_name: str) -> tuple[Any, Any]:
    """(rate, burst) of the stage's */* method settings; absent and -1 both mean no limit."""
    got = aws.aws("apigateway").get_stage(restApiId=rest_api_id, stageName=stage_name)
    settings = got.get("methodSettings", {}).get("*/*", {})
    rate, burst = settings.get("throttlingRateLimit"), settings.get("throttlingBurstLimit")
    return (
        None if rate is None or rate < 0 else rate,
        None if burst is None or burst < 0 else burst,
    )


def function(aws: RecordingClients, name: str = "prompt-router") -> str:
    iam_role = aws.aws("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=TRUST)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.py", "def handler(event, context):\n    return 1\n")
    aws.aws("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=iam_role["Role"]["Arn"],
        Handler="index.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    return name


def concurrency(aws: RecordingClients, name: str) -> int | None:
    value = aws.aws("lambda").get_function_concurrency(FunctionName=name)
    return value.get("ReservedConcurrentExecutions")


def instance(aws: RecordingClients, *, interfaces: int = 1) -> dict[str, Any]:
    """An instance in its own VPC whose interfaces were created first (moto then reports
    their groups faithfully after a swap), with one EBS volume."""
    ec2 = aws.aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    groups = [
        ec2.create_security_group(GroupName=f"app-{i}", Description="app", VpcId=vpc)["GroupId"]
        for i in range(2)
    ]
    enis = [
        ec2.create_network_interface(SubnetId=subnet, Groups=groups if i == 0 else groups[:1])[
            "NetworkInterface"
        ]["NetworkInterfaceId"]
        for i in range(interfaces)
    ]
    launched = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        NetworkInterfaces=[
            {"NetworkInterfaceId": eni, "DeviceIndex": i} for i, eni in enumerate(enis)
        ],
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8}}],
    )["Instances"][0]
    return {
        "instance_id": launched["InstanceId"],
        "vpc_id": vpc,
        "subnet_id": subnet,
        "groups": groups,
        "enis": enis,
    }


def interface_groups(aws: RecordingClients, instance_id: str) -> dict[str, list[str]]:
    described = aws.aws("ec2").describe_instances(InstanceIds=[instance_id])
    found = described["Reservations"][0]["Instances"][0]
    return {
        n["NetworkInterfaceId"]: [g["GroupId"] for g in n["Groups"]]
        for n in found["NetworkInterfaces"]
    }


def termination_protected(aws: RecordingClients, instance_id: str) -> bool:
    answer = aws.aws("ec2").describe_instance_attribute(
        InstanceId=instance_id, Attribute="disableApiTermination"
    )
    return bool(answer["DisableApiTermination"]["Value"])


def subnet_acl(aws: RecordingClients, subnet_id: str) -> str:
    """The subnet's network ACL id, or "quarantine" for any irbook deny-all ACL."""
    acls = aws.aws("ec2").describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["NetworkAcls"]
    tags = {t["Key"]: t["Value"] for t in acls[0].get("Tags", [])}
    return (
        "quarantine" if tags.get("irbook:purpose") == "quarantine" else str(acls[0]["NetworkAclId"])
    )


def ip_set(
    aws: RecordingClients, name: str = "blocklist", addresses: list[str] | None = None
) -> str:
    aws.aws("wafv2").create_ip_set(
        Name=name,
        Scope="REGIONAL",
        IPAddressVersion="IPV4",
        Addresses=addresses if addresses is not None else ["192.0.2.7/32"],
        Description="incident blocks",
    )
    return name


def ip_set_addresses(aws: RecordingClients, name: str = "blocklist") -> list[str]:
    waf = aws.aws("wafv2")
    summary = next(s for s in waf.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == name)
    got = waf.get_ip_set(Name=name, Scope="REGIONAL", Id=summary["Id"])["IPSet"]
    return list(got["Addresses"])


def secret(aws: RecordingClients, name: str = "ml/provider-key", value: str = "sk-leaked") -> str:
    return str(aws.aws("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"])


def secret_value(aws: RecordingClients, name: str = "ml/provider-key") -> str:
    return str(aws.aws("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def parameter(aws: RecordingClients, name: str = "/ml/api-token", value: str = "tok-leaked") -> str:
    aws.aws("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    return name


def parameter_value(aws: RecordingClients, name: str = "/ml/api-token") -> str:
    got = aws.aws("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return str(got["Value"])


def topic(aws: RecordingClients, name: str = "ir-alerts") -> str:
    return str(aws.aws("sns").create_topic(Name=name)["TopicArn"])


def cognito_user(aws: RecordingClients, username: str = "analyst@example.com") -> dict[str, str]:
    """A signed-in user: the refresh token is what global sign-out must revoke."""
    idp = aws.aws("cognito-idp")
    pool = idp.create_user_pool(PoolName="inference-users")["UserPool"]["Id"]
    app = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="console",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.admin_create_user(
        UserPoolId=pool,
        Username=username,
        TemporaryPassword="Temp-Passw0rd!",
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=pool, Username=username, Password="Real-Passw0rd!", Permanent=True
    )
    signed_in = idp.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=app,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": "Real-Passw0rd!"},
    )
    return {
        "user_pool_id": pool,
        "username": username,
        "client_id": app,
        "refresh_token": signed_in["AuthenticationResult"]["RefreshToken"],
    }


def refresh_works(aws: RecordingClients, user: dict[str, str]) -> bool:
    from botocore.exceptions import ClientError

    try:
        aws.aws("cognito-idp").admin_initiate_auth(
            UserPoolId=user["user_pool_id"],
            ClientId=user["client_id"],
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": user["refresh_token"]},
        )
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NotAuthorizedException"
        return False
    return True


def sqs_inbox(aws: RecordingClients, topic_arn: str) -> str:
    """A queue subscribed to the topic: what a pager or mail bridge would receive."""
    sqs = aws.aws("sqs")
    url = sqs.create_queue(QueueName="pager")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.aws("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return str(url)


def received(aws: RecordingClients, queue_url: str) -> list[dict[str, Any]]:
    messages = aws.aws("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]
