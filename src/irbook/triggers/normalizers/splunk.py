"""Splunk's webhook alert action: `{sid, search_name, app, owner, results_link, result}`.

Splunk posts only the first result row. Mapping: id = `<sid>:<hash of result>` (the sid
names the search run, the hash tells rows apart and is stable across key order), type and
title = search_name, time = result._time, severity = result.severity or result.urgency,
actor and resources from the CIM field names Splunk apps use (user, src_ip/src, dest,
aws_account_id, region).

Options: `fields` maps alert fields to result field names (`"actor.ip": "src_ip"`) or to
`$` paths from the payload root; `severity_map` and `default_severity` (a label such as
high, or 0-10) cover words and rows without a severity. A row with neither a severity we
can read nor a default is refused (422) naming result.severity and result.urgency, rather
than passing as severity 0, below every trigger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    Draft,
    Node,
    NormalizeError,
    check_payload,
    first_time,
    resource,
    stable_hash,
)
from irbook.triggers.normalizers._options import (
    Severity,
    apply_fields,
    configured_severity,
    default_severity,
    field_map,
    lookup,
    read_options,
    set_severity,
    settle_severity,
    severity_map,
    severity_of,
    source_name,
)

OPTIONS = frozenset({"fields", "severity_map", "default_severity"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    source = source_name(opts, "splunk")
    fields = field_map(opts, bare_keys=True)
    words = severity_map(opts)
    default = default_severity(opts, words)

    root = check_payload(payload)
    root.need_obj()
    sid = root.get("sid").ident(numbers=True)
    result = root.get("result")
    result.need_obj()
    search_name = root.get("search_name").text()
    for key in ("app", "owner", "results_link"):
        root.get(key).text()  # documented as text; anything else is not a Splunk post

    if "id" in fields:
        ident = lookup(fields, "id", root, result).ident(numbers=True)
    else:
        ident = f"{sid}:{stable_hash(result.value, result.path)}"
    draft = Draft(
        id=ident,
        source=source,
        raw=payload,
        type=search_name or "",
        title=search_name or result.get("rule_name").first_text(TITLE_MAX) or "Splunk alert",
        description=(
            result.get("rule_description").first_text(DESCRIPTION_MAX)
            or result.get("description").first_text(DESCRIPTION_MAX)
            or ""
        ),
        time=first_time(result.get("_time")),
        account=result.get("aws_account_id").first_text(),
        region=result.get("region").first_text(),
        user_name=result.get("user").first_text() or result.get("src_user").first_text(),
        ip=result.get("src_ip").first_text() or result.get("src").first_text(),
    )
    found = None
    if "severity" not in fields:
        for key in ("severity", "urgency"):
            found = _cim_severity(result.get(key), words)
            if found is not None:
                set_severity(draft, found)
                break
    dest = result.get("dest").first_text()
    if dest:
        draft.add(resource("Host", dest, name=dest, region=draft.region))

    if not apply_fields(draft, fields, root, bare_root=result, mapping=words) and found is None:
        looked = configured_severity(fields, root, result)
        if "severity" not in fields:
            looked += [result.get("severity"), result.get("urgency")]
        settle_severity(draft, default, looked)
    return [draft.build()]


def _cim_severity(node: Node, words: Mapping[str, float]) -> Severity | None:
    """CIM severity when it is a word we know; CIM's own "unknown" counts as absent."""
    try:
        return severity_of(node, words)
    except NormalizeError:
        return None
