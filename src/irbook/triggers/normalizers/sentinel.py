"""Microsoft Sentinel incidents, as the Logic Apps "Microsoft Sentinel incident" trigger
receives them: `{objectSchemaType, objectEventType, workspaceInfo, object: {id, name,
properties: {...}}}`.

Mapping: id = object.id (the incident's ARM id, unique across workspaces; else
object.name), type and title = properties.title (Sentinel takes it from the analytics
rule's name; the alert types of scheduled rules are an opaque `<workspace>_<rule guid>`),
severity from properties.severity (High / Medium / Low / Informational), time =
createdTimeUtc, account = the subscription id. From properties.relatedEntities: the first
Account is the actor's user name (`name@upnSuffix`), the first Ip its address; Host and
AzureResource entities become resources. A Closed incident is normalized as resolved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    LABEL_FLOORS,
    TITLE_MAX,
    Draft,
    Node,
    canonical_label,
    check_payload,
    first_time,
    resource,
)
from irbook.triggers.normalizers._options import read_options, source_name

SEVERITIES = ("High", "Medium", "Low", "Informational")


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options)
    source = source_name(opts, "sentinel")
    root = check_payload(payload)
    root.need_obj()
    obj = root.get("object")
    obj.need_obj()
    props = obj.get("properties")
    props.need_obj()

    id_node = obj.get("id") if obj.get("id").present else obj.get("name")
    if not id_node.present:
        raise obj.get("id").error("missing (and no name either)")
    severity = props.get("severity").need_text()
    label = canonical_label(severity) if severity.capitalize() in SEVERITIES else None
    if label is None:
        raise props.get("severity").error(f"expected one of {', '.join(SEVERITIES)}")
    title = props.get("title").need_text(TITLE_MAX)

    draft = Draft(
        id=id_node.ident(),
        source=source,
        raw=payload,
        type=title,
        title=title,
        description=props.get("description").text(DESCRIPTION_MAX) or "",
        severity=LABEL_FLOORS[label],
        severity_label=label,
        time=first_time(props.get("createdTimeUtc"), props.get("firstActivityTimeUtc")),
        account=root.at("workspaceInfo", "SubscriptionId").text(),
        resolved=(props.get("status").text() or "").lower() == "closed",
    )
    for entity in props.get("relatedEntities").items():
        _entity(draft, entity)
    return [draft.build()]


def _entity(draft: Draft, entity: Node) -> None:
    entity.need_obj()
    kind = (entity.get("kind").text() or "").lower()
    props = entity.get("properties")
    if kind == "account" and not draft.user_name:
        name = props.get("accountName").text()
        suffix = props.get("upnSuffix").text()
        draft.user_name = f"{name}@{suffix}" if name and suffix else name
    elif kind == "ip" and not draft.ip:
        draft.ip = props.get("address").text()
    elif kind == "host":
        host = props.get("hostName").text()
        domain = props.get("dnsDomain").text()
        draft.add(resource("Host", host, name=f"{host}.{domain}" if host and domain else host))
    elif kind == "azureresource":
        resource_id = props.get("resourceId").text()
        if resource_id:
            name = resource_id.rstrip("/").rsplit("/", 1)[-1]
            draft.add(resource("AzureResource", resource_id, name=name))
