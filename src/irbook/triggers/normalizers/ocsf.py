"""OCSF Detection Findings (class_uid 2004), as Amazon Security Lake, Security Hub's
"Findings Imported V2" events and several SIEMs emit them.

Accepts one finding, a JSON list of findings, `{"findings": [...]}`, or an EventBridge
event whose `detail.findings` holds them; one alert per finding. Any other OCSF class is
refused (422 at its class_uid): a process or network event is not an alert.

Mapping per finding: id = finding_info.uid (else metadata.uid), type =
finding_info.types[0] (else finding_info.analytic.name, else its uid), title =
finding_info.title (else message), description = finding_info.desc (else message),
severity from severity_id (1 Informational 0, 2 Low 1, 3 Medium 4, 4 High 7, 5 Critical
9, 6 Fatal 10; 0 Unknown and 99 Other fall back to the `severity` caption, which
`severity_map` may map), time = time (else finding_info's modified, created or first seen
time), account = cloud.account.uid, region = cloud.region. The actor: actor.user.name
(else uid), the first ARN of actor.user.uid and actor.session.issuer, actor.user's
credential_uid (an AWS access key id) and src_endpoint.ip (else the first evidence's).
resources[] become resources (an ARN uid keeps its ARN; tags from `{name, value}` pairs).
activity_id 3 (Close) or status_id 4-6 (Resolved, Archived, Deleted) is resolved.

A finding with no usable severity gets the source's `default_severity` (a label such as
high, or 0-10), else it is refused (422) naming severity_id.
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
    arn_tail,
    check_payload,
    first_time,
    resource,
    tags_from_pairs,
)
from irbook.triggers.normalizers._options import (
    Severity,
    default_severity,
    read_options,
    set_severity,
    settle_severity,
    severity_map,
    severity_of,
    source_name,
)

DETECTION_FINDING = 2004
OPTIONS = frozenset({"severity_map", "default_severity"})
# severity_id -> (0-10 score, label). Fatal is beyond critical: the top of the scale.
SEVERITY_IDS: dict[int, tuple[float, str]] = {
    1: (LABEL_FLOORS["informational"], "informational"),
    2: (LABEL_FLOORS["low"], "low"),
    3: (LABEL_FLOORS["medium"], "medium"),
    4: (LABEL_FLOORS["high"], "high"),
    5: (LABEL_FLOORS["critical"], "critical"),
    6: (10.0, "critical"),
}
_NO_SEVERITY_IDS = (0, 99)  # Unknown, Other: the caption may say more
_NO_SEVERITY_WORDS = ("unknown", "other", "")
_RESOLVED_STATUS_IDS = (4, 5, 6)  # Resolved, Archived, Deleted
_CLOSE_ACTIVITY = 3


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "ocsf")
    words = severity_map(opts)
    default = default_severity(opts, words)
    root = check_payload(payload)
    return [_finding(f, payload, source, words, default) for f in _findings(root)]


def _findings(root: Node) -> list[Node]:
    if isinstance(root.value, list):
        found = root.items(strict=True)
        where = root
    else:
        mapping = root.need_obj()
        if "class_uid" in mapping:
            return [root]
        where = root.at("detail", "findings") if "detail" in mapping else root.get("findings")
        if not where.present and "detail" not in mapping and "findings" not in mapping:
            return [root]  # reported at its missing class_uid
        found = where.required().items(strict=True)
    if not found:
        raise where.error("expected at least one finding")
    return found


def _finding(
    f: Node, payload: Any, source: str, words: Mapping[str, float], default: Severity | None
) -> Alert:
    f.need_obj()
    class_uid = f.get("class_uid")
    if class_uid.required().number(strings=True) != DETECTION_FINDING:
        raise class_uid.error("expected 2004 (Detection Finding); other OCSF classes are refused")
    info = f.get("finding_info")
    info.obj()
    id_node = info.get("uid") if info.get("uid").present else f.at("metadata", "uid")
    if not id_node.present:
        raise info.get("uid").error("missing (and no metadata.uid either)")
    analytic = info.get("analytic")
    types = info.get("types").items(limit=16)
    kind = types[0].text() if types else None
    message = f.get("message").text(DESCRIPTION_MAX)
    cloud = f.get("cloud")
    status = f.get("status_id").number(strings=True)
    draft = Draft(
        id=id_node.ident(numbers=True),
        source=source,
        raw=payload,
        type=kind or analytic.get("name").text() or analytic.get("uid").text(numbers=True) or "",
        title=info.get("title").text(TITLE_MAX) or (message or "")[:TITLE_MAX],
        description=info.get("desc").text(DESCRIPTION_MAX) or message or "",
        time=first_time(
            f.get("time"),
            f.get("time_dt"),
            info.get("modified_time"),
            info.get("created_time"),
            info.get("first_seen_time"),
        ),
        account=cloud.at("account", "uid").text(numbers=True),
        region=cloud.get("region").text(),
        resolved=(
            f.get("activity_id").number(strings=True) == _CLOSE_ACTIVITY
            or status in _RESOLVED_STATUS_IDS
        ),
    )
    found = _severity(f, words)
    if found is None:
        settle_severity(draft, default, [f.get("severity_id"), f.get("severity")])
    else:
        set_severity(draft, found)
    _actor(draft, f)
    for r in f.get("resources").items():
        _resource(draft, r)
    return draft.build()


def _severity(f: Node, words: Mapping[str, float]) -> Severity | None:
    """severity_id when it names a level; the caption when the id is Unknown or Other."""
    id_node = f.get("severity_id")
    number = id_node.number(strings=True)
    if number is not None and number not in _NO_SEVERITY_IDS:
        level = SEVERITY_IDS.get(int(number)) if number.is_integer() else None
        if level is None:
            raise id_node.error("expected 0-6 or 99")
        return level
    caption = f.get("severity")
    word = (caption.text() or "").strip().lower()
    if word in _NO_SEVERITY_WORDS and word not in words:
        return None
    if word == "fatal" and word not in words:
        return SEVERITY_IDS[6]
    return severity_of(caption, words)


def _actor(draft: Draft, f: Node) -> None:
    actor = f.get("actor")
    user, session = actor.get("user"), actor.get("session")
    uid = user.get("uid").text(numbers=True)
    draft.user_name = user.get("name").text() or uid
    for arn in (uid, session.get("issuer").text()):
        if arn and arn.startswith("arn:"):
            draft.principal_arn = arn
            break
    draft.access_key_id = user.get("credential_uid").text()
    draft.ip = f.at("src_endpoint", "ip").text()
    if not draft.ip:
        for evidence in f.get("evidences").items(limit=16):
            draft.ip = evidence.at("src_endpoint", "ip").text()
            if draft.ip:
                break


def _resource(draft: Draft, r: Node) -> None:
    r.need_obj()
    uid = r.get("uid").text(numbers=True) or ""
    arn = uid if uid.startswith("arn:") else None
    draft.add(
        resource(
            r.get("type").text() or "Resource",
            arn_tail(uid) if uid else None,
            arn=arn,
            name=r.get("name").text(),
            region=r.get("region").text() or draft.region,
            tags=tags_from_pairs(r.get("tags"), key="name"),
        )
    )
