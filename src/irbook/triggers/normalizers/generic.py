"""Any JSON alert, described by the source's options rather than by a vendor.

    format: generic
    options:
      fields:
        id: $.alert.id                 # required; a post without it is refused at this path
        title: $.alert['display name']
        severity: $.sev                # a number, or a word mapped by severity_map
        actor.ip: $.src
        resource.id: $.hosts           # a list gives one resource per element
      severity_map: {sev1: 9, sev2: 7}
      severity_scale: 100              # the source's numeric maximum (default 10)
      default_severity: medium         # for posts without one (a label, or 0-10)
      alerts: $.items                  # optional: one alert per element, paths relative to it

A source needs `fields.severity` (or `severity_label`), `default_severity`, or both: an
alert whose severity nobody can tell would pass as 0, below every trigger. A post whose
configured severity path is empty gets the default, else is refused (422) at that path.

Paths are the small JSONPath subset documented in `_options` (`$.a.b`, `$.a[0].b`,
`$.a['key with.dot']`); they are only ever looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irbook.model.alert import Alert
from irbook.triggers.normalizers._base import Draft, OptionsError, check_payload
from irbook.triggers.normalizers._options import (
    apply_fields,
    configured_severity,
    default_severity,
    field_map,
    lookup,
    number_option,
    parse_path,
    read_options,
    resolve,
    settle_severity,
    severity_map,
    source_name,
)

OPTIONS = frozenset({"fields", "severity_map", "severity_scale", "default_severity", "alerts"})


def normalize(payload: Any, options: Mapping[str, Any] | None = None) -> list[Alert]:
    opts = read_options(options, OPTIONS)
    fields = field_map(opts)
    if "id" not in fields:
        raise OptionsError("options.fields.id", "the generic format needs a path to the id")
    words = severity_map(opts)
    scale = number_option(opts, "severity_scale", 10.0, 1e-9)
    default = default_severity(opts, words)
    source = source_name(opts, "generic")
    each = opts.get("alerts")
    if each is not None and not isinstance(each, str):
        raise OptionsError("options.alerts", "expected a path such as $.items")
    steps = parse_path(each, "options.alerts") if each is not None else None
    if default is None and "severity" not in fields and "severity_label" not in fields:
        raise OptionsError(
            "options.fields.severity",
            "the generic format needs a path to the severity, or a default_severity",
        )

    root = check_payload(payload)
    roots = [root] if steps is None else resolve(root, steps).required().items(strict=True)

    alerts = []
    for item in roots:
        draft = Draft(
            id=lookup(fields, "id", item, item).ident(numbers=True),
            source=source,
            raw=payload,
        )
        if not apply_fields(draft, fields, item, mapping=words, scale=scale):
            settle_severity(draft, default, configured_severity(fields, item, item))
        alerts.append(draft.build())
    return alerts
