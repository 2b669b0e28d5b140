"""Live clients for actions: boto3, slack-sdk and jira, built on first use.

This is the live implementation of `irbook.registry.ClientFactory`. Tests point it,
through the same environment variables a user sets, at moto's server, a local fake Slack
and a local fake Jira (the sandbox at moto's); dry runs use `NoClients`.

Every client gets explicit timeouts so that a hung API cannot hang a run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from typing import Any

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


def _secret_block(name: str) -> str | None:
    """A Prefect Secret block's value, when Prefect is reachable and the block exists."""
    if "prefect" not in sys.modules:
        return None  # outside a run (tests, plans): do not start Prefect for this
    try:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name, _sync=True)  # type: ignore[call-arg]
        value = block.get()
    except Exception:  # no such block, no API: the caller says what to configure
        return None
    return str(value) if value else None


# Request parameters that carry secrets: never kept in the run record.
SECRET_PARAMS = frozenset(
    {
        "SecretString",
        "SecretBinary",
        "Password",
        "NewPassword",
        "OldPassword",
        "PrivateKey",
        "ClientSecret",
        "SecretAccessKey",
        "SessionToken",
    }
)
SECRET_PARAMS_BY_OPERATION = {("ssm", "PutParameter"): frozenset({"Value"})}


def _scrub(value: Any, hidden: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: ("***" if k in SECRET_PARAMS or k in hidden else _scrub(v, hidden))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v, hidden) for v in value]
    return value


def _record(model: Any, params: Any, **_: Any) -> None:
    """botocore hook: every real AWS call lands in the step's record of real calls,
    with secret-bearing parameters (new secret values, passwords) replaced by ***."""
    from irbook.registry import PlannedCall, record_call

    service = str(model.service_model.signing_name or model.service_model.endpoint_prefix)
    hidden = SECRET_PARAMS_BY_OPERATION.get((service, str(model.name)), frozenset())
    record_call(PlannedCall(service, str(model.name), _scrub(dict(params or {}), hidden)))


class LiveClients:
    """Clients from the environment: the standard boto3 chain, SLACK_BOT_TOKEN (and
    IRBOOK_SLACK_BASE_URL), JIRA_URL with JIRA_EMAIL + JIRA_API_TOKEN or JIRA_PAT.

    `aws_endpoint_url` (or $AWS_ENDPOINT_URL, which boto3 also reads) points every AWS
    client at one endpoint, such as `irbook sandbox`'s moto server.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        aws_endpoint_url: str | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
        read_timeout: float = READ_TIMEOUT,
        max_attempts: int = 5,
        slack_token: str | None = None,
        slack_base_url: str | None = None,
        jira_options: dict[str, Any] | None = None,
    ) -> None:
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self.aws_endpoint_url = aws_endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        self.role_arn = role_arn
        self.external_id = external_id
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.slack_token = slack_token
        self.slack_base_url = slack_base_url
        self.jira_options = jira_options
        # One lock per boto3 session: a Session is not thread-safe, and the clones for
        # step timeouts share their parent's session (so they share this lock too).
        self._lock = threading.Lock()
        self._session: Any = None
        self._aws: dict[tuple[str, str | None], Any] = {}
        self._slack: Any = None
        self._jira: Any = None
        # The factories for a step's timeout or role, built once per run and reused by
        # every step that asks for the same one: one session and one client per
        # (role, region, service), and a role assumed once, not once per step.
        self._derived: dict[tuple[Any, ...], LiveClients] = {}
        self._parent: LiveClients | None = None  # whose session a timeout clone uses

    def with_timeout(self, seconds: float) -> LiveClients:
        """Clients for one step with a `timeout`: every call gives up within it.

        Prefect's task timeout cannot interrupt a blocking call in a worker thread, so the
        step's timeout becomes the clients' read timeout, with one attempt per call (the
        step's own `retries` decide about trying again). Steps with the same timeout share
        one such factory, and every one shares this factory's credentials (its session).
        """
        read_timeout = max(0.1, float(seconds))
        with self._lock:
            clone = self._derived.get(("timeout", read_timeout))
            if clone is None:
                clone = LiveClients(
                    region=self.region,
                    aws_endpoint_url=self.aws_endpoint_url,
                    role_arn=self.role_arn,
                    external_id=self.external_id,
                    read_timeout=read_timeout,
                    max_attempts=1,
                    slack_token=self.slack_token,
                    slack_base_url=self.slack_base_url,
                    jira_options=self.jira_options,
                )
                clone._lock = self._lock  # the same session: the same lock
                clone._parent = self
                self._derived[("timeout", read_timeout)] = clone
            return clone

    def with_role(
        self, role_arn: str, external_id: str | None = None, region: str | None = None
    ) -> LiveClients:
        """Clients acting in another account: the role is assumed on first use, with this
        factory's own credentials (a step's or a playbook's `aws: {role_arn, external_id}`).
        Steps naming the same role, external id and region share one such factory."""
        key = ("role", role_arn, external_id, region or self.region)
        with self._lock:
            child = self._derived.get(key)
            if child is None:
                child = LiveClients(
                    region=region or self.region,
                    aws_endpoint_url=self.aws_endpoint_url,
                    role_arn=role_arn,
                    external_id=external_id,
                    read_timeout=self.read_timeout,
                    max_attempts=self.max_attempts,
                    slack_token=self.slack_token,
                    slack_base_url=self.slack_base_url,
                    jira_options=self.jira_options,
                )
                self._derived[key] = child
            return child

    def prepare(self, services: Iterable[tuple[str, str | None]]) -> threading.Thread:
        """Build these (service, region) clients in a background thread, now.

        Importing boto3 and loading a service's model take longer than the calls of a
        short step; `irbook run` starts this while Prefect creates the flow run, so the
        first step finds its client ready (a step asking for it meanwhile waits on the
        lock, then reuses it). Building a client calls nothing; an error (no region, an
        unknown service) is left for the step to meet and report as its own.
        """

        def build() -> None:
            for service, region in services:
                with contextlib.suppress(Exception):
                    self.aws(service, region=region)

        thread = threading.Thread(target=build, name="irbook-aws-clients", daemon=True)
        thread.start()
        return thread

    # -- AWS ------------------------------------------------------------------------

    def _boto_session(self) -> Any:
        import boto3

        parent = self._parent
        if self._session is None and parent is not None:
            self._session = parent._boto_session()  # under the lock they share
        if self._session is None:
            base = boto3.session.Session(region_name=self.region)
            if self.role_arn:
                sts = base.client("sts", endpoint_url=self.aws_endpoint_url, config=self._config())
                kwargs: dict[str, Any] = {
                    "RoleArn": self.role_arn,
                    "RoleSessionName": "irbook",
                    "DurationSeconds": 3600,
                }
                if self.external_id:
                    kwargs["ExternalId"] = self.external_id
                creds = sts.assume_role(**kwargs)["Credentials"]
                base = boto3.session.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                    region_name=self.region,
                )
            self._session = base
        return self._session

    def _config(self) -> Any:
        from botocore.config import Config

        return Config(
            connect_timeout=min(CONNECT_TIMEOUT, self.read_timeout),
            read_timeout=self.read_timeout,
            retries={"mode": "adaptive", "total_max_attempts": self.max_attempts},
            user_agent_extra="irbook",
        )

    def aws(self, service: str, *, region: str | None = None) -> Any:
        key = (service, region)
        with self._lock:
            client = self._aws.get(key)
            if client is None:
                client = self._boto_session().client(
                    service,
                    region_name=region or self.region,
                    endpoint_url=self.aws_endpoint_url,
                    config=self._config(),
                )
                client.meta.events.register("before-parameter-build.*.*", _record)
                self._aws[key] = client
            return client

    # -- Slack ----------------------------------------------------------------------

    def slack(self) -> Any:
        from slack_sdk import WebClient

        with self._lock:
            if self._slack is None:
                token = (
                    self.slack_token
                    or os.environ.get("SLACK_BOT_TOKEN")
                    or _secret_block("irbook-slack-bot-token")
                )
                if not token:
                    from irbook.errors import IrbookError

                    raise IrbookError(
                        "Slack is not configured: set SLACK_BOT_TOKEN or create the Prefect "
                        "Secret block 'irbook-slack-bot-token'"
                    )
                kwargs: dict[str, Any] = {"token": token, "timeout": max(1, int(self.read_timeout))}
                base_url = self.slack_base_url or os.environ.get("IRBOOK_SLACK_BASE_URL")
                if base_url:
                    kwargs["base_url"] = base_url
                self._slack = WebClient(**kwargs)
            return self._slack

    # -- Jira -----------------------------------------------------------------------

    def jira(self) -> Any:
        """The `jira.JIRA` client for `$IRBOOK_JIRA_FLAVOR`: Cloud with JIRA_EMAIL +
        JIRA_API_TOKEN (basic auth), Server/Data Center with JIRA_PAT (bearer token).

        The REST version goes in `options` (the library has no such keyword), no server
        info is fetched (one request less, and the actions do not need it), and the library
        does not retry: its retry of a POST after a dropped connection could open a second
        ticket behind the dedup search, and would be a real call the plan never showed.
        The step's own `retries` decide about trying again.
        """
        from irbook.errors import IrbookError

        with self._lock:
            if self._jira is None:
                from jira import JIRA

                from irbook_actions.jira import client_options, flavor

                kind = flavor()
                # REST v3 (Cloud) or v2 (Server), as the Jira actions' planners assume
                options: dict[str, Any] = {**client_options(kind), **(self.jira_options or {})}
                server = options.pop("server", None) or os.environ.get("JIRA_URL")
                if not server:
                    raise IrbookError("Jira is not configured: set JIRA_URL")
                max_retries = int(options.pop("max_retries", 0))
                email = os.environ.get("JIRA_EMAIL")
                token = os.environ.get("JIRA_API_TOKEN")
                pat = os.environ.get("JIRA_PAT")
                basic = {"basic_auth": (email, token)} if email and token else None
                bearer = {"token_auth": pat} if pat else None
                # each flavour's own scheme first; the other one if it is all there is
                auth = (basic or bearer) if kind == "cloud" else (bearer or basic)
                if auth is None:
                    raise IrbookError(
                        "Jira credentials missing: set JIRA_EMAIL and JIRA_API_TOKEN (Cloud) "
                        "or JIRA_PAT (Server/Data Center, with IRBOOK_JIRA_FLAVOR=server)"
                    )
                self._jira = JIRA(
                    server=str(server),
                    options=options,
                    timeout=(min(CONNECT_TIMEOUT, self.read_timeout), self.read_timeout),
                    max_retries=max_retries,
                    get_server_info=False,
                    **auth,
                )
            return self._jira
