"""Wazuh alerts, as the manager writes them to alerts.json and its integrations post them.

Mapping: id = id (the manager's `<epoch>.<offset>` alert id), type = rule.id, title =
rule.description, description = full_log, time = timestamp. Severity scales rule.level
(0-15; 16 exists in OSSEC) to 0-10 and the label follows the Wazuh dashboard's bands: low
0-6, medium 7-11, high 12-14, critical 15 and up. The actor comes from data.srcuser /
data.srcip, or from data.aws (CloudTrail through Wazuh's AWS module: userIdentity and
sourceIPAddress); the agent is a Host resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    Draft,
    check_payload,
    clamp_severity,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import read_options, source_name

MAX_LEVEL = 15.0


def level_label(level: float) -> str:
    if level >= 15:
        return "critical"
    if level >= 12:
        return "high"
    if level >= 7:
        return "medium"
    return "low" if level > 0 else "informational"


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options)
    source = source_name(opts, "wazuh")
    root = check_payload(payload)
    root.need_obj()
    rule = root.get("rule")
    rule.need_obj()
    level = rule.get("level").required().number(strings=True)
    assert level is not None
    level = min(16.0, max(0.0, level))
    data = root.get("data")
    aws = data.get("aws")
    identity = aws.get("userIdentity")

    draft = Draft(
        id=root.get("id").ident(numbers=True),
        source=source,
        raw=payload,
        type=rule.get("id").need_text(numbers=True),
        title=rule.get("description").text(TITLE_MAX) or "",
        description=root.get("full_log").text(DESCRIPTION_MAX) or "",
        severity=clamp_severity(level * 10.0 / MAX_LEVEL),
        severity_label=level_label(level),
        time=first_time(root.get("timestamp"), root.get("@timestamp")),
        account=aws.get("accountId").text(numbers=True) or aws.get("recipientAccountId").text(),
        region=aws.get("region").text() or aws.get("awsRegion").text(),
        user_name=data.get("srcuser").text() or identity.get("userName").text(),
        principal_arn=_arn(identity.get("arn").text()),
        access_key_id=identity.get("accessKeyId").text(),
        ip=data.get("srcip").text() or aws.get("sourceIPAddress").text(),
    )
    agent = root.get("agent")
    agent_id = agent.get("id").text(numbers=True)
    if agent_id:
        draft.add(resource("Host", agent_id, name=agent.get("name").text()))
    return [draft.build()]


def _arn(text: str | None) -> str | None:
    return text if text and text.startswith("arn:") else None
