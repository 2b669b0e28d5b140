"""A small AI deployment in a fake AWS (moto), for demos, drills and tests.

`seed` builds what irbook's playbooks act on: a model-serving IAM user with an access key
and a console password, roles, a SageMaker endpoint whose model artifact sits in S3, an
API Gateway stage with an API key, a Lambda function, an EC2 instance in its own subnet
with an instance profile that hands it the inference role, a secret, a SecureString
parameter, an SNS topic, a WAF IP set and a Cognito user.

It uses fixed fake credentials rather than the environment's, so pointing it at the
wrong endpoint can never create anything with real credentials; and it refuses any
endpoint that is not on this machine.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any
from urllib.parse import urlparse

from irbook.errors import IrbookError

FAKE_KEY = "testing"  # moto accepts any credentials
CONSOLE_PASSWORD = "Sandbox-Only-Pa55word!"  # noqa: S105 - a fake password for a fake AWS
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

USER = "ml-inference-svc"
ROLE = "ml-inference-role"
INSTANCE_PROFILE = "ml-inference-profile"  # hands ROLE to the inference host
EXECUTION_ROLE = "sagemaker-execution-role"
MODEL_BUCKET = "irbook-sandbox-models"
MODEL_KEY = "fraud-scoring/model.tar.gz"
MODEL = "fraud-scoring-model"
ENDPOINT_CONFIG = "fraud-scoring-config"
ENDPOINT = "fraud-scoring"
FUNCTION = "prompt-router"
API_KEY_SECRET = "ml/llm-provider-api-key"  # noqa: S105 - a name, not a value
PARAMETER = "/ml/inference/api-token"
TOPIC = "ir-alerts"
IP_SET = "irbook-blocklist"
EVIDENCE_BUCKET = "irbook-sandbox-evidence"

_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {'route': 'llm'}\n")
    return buffer.getvalue()


def seed(endpoint_url: str, region: str = "us-east-1") -> dict[str, str]:
    """Create the sandbox deployment in the (moto) AWS at `endpoint_url`; returns the ids
    and names a playbook's inputs need. Seed a fresh server: names are fixed."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    host = urlparse(endpoint_url).hostname or ""
    if host not in LOCAL_HOSTS:
        raise IrbookError(f"the sandbox only seeds a local fake AWS, not {endpoint_url}")
    session = boto3.session.Session(
        aws_access_key_id=FAKE_KEY, aws_secret_access_key=FAKE_KEY, region_name=region
    )
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})

    def client(service: str) -> Any:
        factory: Any = session.client  # typed per service name; the name is a variable here
        return factory(service, endpoint_url=endpoint_url, config=config)

    try:
        return _seed(client, region)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise IrbookError(
            f"sandbox seed failed: {exc.operation_name}: {error.get('Code')}: "
            f"{error.get('Message')} (seed a fresh server)"
        ) from None
    except BotoCoreError as exc:
        raise IrbookError(f"sandbox seed failed: {exc}") from None


def _seed(client: Any, region: str) -> dict[str, str]:
    out: dict[str, str] = {"region": region}

    iam = client("iam")
    iam.create_user(UserName=USER, Tags=[{"Key": "team", "Value": "ml-platform"}])
    out["user_name"] = USER
    out["access_key_id"] = iam.create_access_key(UserName=USER)["AccessKey"]["AccessKeyId"]
    iam.create_login_profile(UserName=USER, Password=CONSOLE_PASSWORD)
    trust = json.dumps(_TRUST)
    out["role_name"] = ROLE
    out["role_arn"] = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    execution = iam.create_role(RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument=trust)
    profile = iam.create_instance_profile(InstanceProfileName=INSTANCE_PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_PROFILE, RoleName=ROLE)
    out["instance_profile_name"] = INSTANCE_PROFILE
    out["instance_profile_arn"] = profile["InstanceProfile"]["Arn"]
    out["user_arn"] = iam.get_user(UserName=USER)["User"]["Arn"]

    s3 = client("s3")
    bucket: dict[str, Any] = {"Bucket": MODEL_BUCKET}
    if region != "us-east-1":
        bucket["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**bucket)
    s3.put_object(Bucket=MODEL_BUCKET, Key=MODEL_KEY, Body=b"fraud-scoring weights v7\n" * 64)
    out["model_bucket"] = MODEL_BUCKET
    out["model_data_url"] = f"s3://{MODEL_BUCKET}/{MODEL_KEY}"
    out["evidence_bucket"] = EVIDENCE_BUCKET  # not created: snapshot_model creates it

    sagemaker = client("sagemaker")
    sagemaker.create_model(
        ModelName=MODEL,
        ExecutionRoleArn=execution["Role"]["Arn"],
        PrimaryContainer={
            "Image": f"123456789012.dkr.ecr.{region}.amazonaws.com/fraud-scoring:7",
            "ModelDataUrl": out["model_data_url"],
            "Environment": {"MODEL_VERSION": "7"},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=ENDPOINT_CONFIG,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": MODEL,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
        ],
    )
    endpoint = sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT_CONFIG)
    out.update(
        model_name=MODEL,
        endpoint_config_name=ENDPOINT_CONFIG,
        endpoint_name=ENDPOINT,
        endpoint_arn=endpoint["EndpointArn"],
    )

    gateway = client("apigateway")
    api = gateway.create_rest_api(name="inference-api")["id"]
    root = gateway.get_resources(restApiId=api)["items"][0]["id"]
    gateway.put_method(restApiId=api, resourceId=root, httpMethod="POST", authorizationType="NONE")
    gateway.put_integration(restApiId=api, resourceId=root, httpMethod="POST", type="MOCK")
    gateway.create_deployment(restApiId=api, stageName="prod")
    out.update(rest_api_id=api, stage_name="prod")
    out["api_key_id"] = gateway.create_api_key(name="partner-key", enabled=True)["id"]

    functions = client("lambda")
    out["function_name"] = FUNCTION
    out["function_arn"] = functions.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.12",
        Role=out["role_arn"],
        Handler="index.handler",
        Code={"ZipFile": _lambda_zip()},
    )["FunctionArn"]

    ec2 = client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="inference", Description="inference hosts", VpcId=vpc
    )["GroupId"]
    interface = ec2.create_network_interface(SubnetId=subnet, Groups=[group])
    eni = interface["NetworkInterface"]["NetworkInterfaceId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        NetworkInterfaces=[{"NetworkInterfaceId": eni, "DeviceIndex": 0}],
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 8}}],
        IamInstanceProfile={"Name": INSTANCE_PROFILE},  # its credentials are ROLE's sessions
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "gpu-inference-1"}]}
        ],
    )["Instances"][0]
    out.update(
        vpc_id=vpc,
        subnet_id=subnet,
        security_group_id=group,
        network_interface_id=eni,
        instance_id=instance["InstanceId"],
    )

    secrets = client("secretsmanager")
    out["secret_id"] = API_KEY_SECRET
    out["secret_arn"] = secrets.create_secret(
        Name=API_KEY_SECRET, SecretString="sk-sandbox-not-real"
    )["ARN"]
    ssm = client("ssm")
    ssm.put_parameter(Name=PARAMETER, Value="sandbox-token-not-real", Type="SecureString")
    out["parameter_name"] = PARAMETER

    out["topic_arn"] = client("sns").create_topic(Name=TOPIC)["TopicArn"]
    waf = client("wafv2")
    ip_set = waf.create_ip_set(
        Name=IP_SET,
        Scope="REGIONAL",
        IPAddressVersion="IPV4",
        Addresses=[],
        Description="addresses blocked during incidents",
    )["Summary"]
    out.update(ip_set_name=IP_SET, ip_set_arn=ip_set["ARN"])

    cognito = client("cognito-idp")
    pool = cognito.create_user_pool(PoolName="inference-users")["UserPool"]
    cognito.admin_create_user(UserPoolId=pool["Id"], Username="analyst@example.com")
    out.update(user_pool_id=pool["Id"], cognito_username="analyst@example.com")
    return out


# --- what happened: the leaked key's CloudTrail history and GuardDuty's finding ----------

ACCOUNT = "123456789012"  # moto's default account
ATTACKER_IP = "198.51.100.23"  # TEST-NET-2: documentation addresses, never routed
SERVICE_IP = "10.20.1.15"
SEEDED = "seeded by irbook sandbox: not a real event"


def cloudtrail_events(created: dict[str, str], now: float) -> list[dict[str, Any]]:
    """CloudTrail events of the seeded key over the last hours, in LookupEvents' shape:
    the service's own calls from inside the VPC, then the leaked key from outside.
    Each is marked as the sandbox's (EventId, user agent, additionalEventData)."""
    key, user, region = created["access_key_id"], created["user_name"], created["region"]
    script = [  # (minutes ago, event, source, from, read-only)
        (300, "InvokeEndpoint", "sagemaker.amazonaws.com", SERVICE_IP, True),
        (240, "InvokeEndpoint", "sagemaker.amazonaws.com", SERVICE_IP, True),
        (95, "GetCallerIdentity", "sts.amazonaws.com", ATTACKER_IP, True),
        (90, "ListEndpoints", "sagemaker.amazonaws.com", ATTACKER_IP, True),
        (88, "DescribeEndpoint", "sagemaker.amazonaws.com", ATTACKER_IP, True),
        (80, "ListBuckets", "s3.amazonaws.com", ATTACKER_IP, True),
        (75, "CreateUser", "iam.amazonaws.com", ATTACKER_IP, False),
        *(
            (70 - i * 5, "InvokeEndpoint", "sagemaker.amazonaws.com", ATTACKER_IP, True)
            for i in range(8)
        ),
    ]
    events: list[dict[str, Any]] = []
    for number, (minutes, name, source, ip, read_only) in enumerate(script, start=1):
        when = now - minutes * 60
        agent = "irbook-sandbox/seeded-event" + (" (from outside AWS)" if ip == ATTACKER_IP else "")
        detail: dict[str, Any] = {
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "userName": user, "accessKeyId": key},
            "eventName": name,
            "eventSource": source,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "additionalEventData": {"irbookSandbox": SEEDED},
        }
        if name == "CreateUser":
            detail["errorCode"] = "AccessDenied"
        events.append(
            {
                "EventId": f"sandbox-{number:04d}",
                "EventName": name,
                "ReadOnly": "true" if read_only else "false",
                "AccessKeyId": key,
                "EventTime": when,
                "EventSource": source,
                "Username": user,
                "Resources": [],
                "CloudTrailEvent": json.dumps(detail),
            }
        )
    return events


def guardduty_finding(created: dict[str, str], when: str) -> dict[str, Any]:
    """The GuardDuty finding (as EventBridge delivers it) of the seeded long-term key used
    from an address on the account's threat list against the model bucket: what
    `irbook serve` would receive, and what starts leaked-model-key. Its title says it
    comes from the sandbox."""
    region, key, user = created["region"], created["access_key_id"], created["user_name"]
    finding = "0sandbox0leaked0key0finding0001"
    return {
        "version": "0",
        "id": "11111111-2222-3333-4444-555555555555",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": ACCOUNT,
        "time": when,
        "region": region,
        "detail": {
            "schemaVersion": "2.0",
            "accountId": ACCOUNT,
            "region": region,
            "partition": "aws",
            "id": finding,
            "arn": f"arn:aws:guardduty:{region}:{ACCOUNT}:detector/sandbox/finding/{finding}",
            "type": "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom",
            "title": (
                f"(irbook sandbox) API GetObject was invoked by {user} from an IP address "
                "on a custom threat list."
            ),
            "description": (
                f"Seeded by irbook sandbox: access key {key} of {user} was used from "
                f"{ATTACKER_IP} to read {MODEL_BUCKET} and invoke the {ENDPOINT} endpoint."
            ),
            "severity": 5,
            "createdAt": when,
            "updatedAt": when,
            "resource": {
                "resourceType": "AccessKey",
                "accessKeyDetails": {
                    "accessKeyId": key,
                    "principalId": "AIDASANDBOXEXAMPLE01",
                    "userName": user,
                    "userType": "IAMUser",
                },
                "s3BucketDetails": [
                    {"name": MODEL_BUCKET, "arn": f"arn:aws:s3:::{MODEL_BUCKET}", "type": "Source"}
                ],
            },
            "service": {
                "serviceName": "guardduty",
                "action": {
                    "actionType": "AWS_API_CALL",
                    "awsApiCallAction": {
                        "api": "GetObject",
                        "serviceName": "s3.amazonaws.com",
                        "remoteIpDetails": {"ipAddressV4": ATTACKER_IP},
                    },
                },
            },
        },
    }
