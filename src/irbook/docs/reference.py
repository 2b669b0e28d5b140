"""The format's reference page (docs/expressions.md), generated from the code it describes.

`irbook schema --expressions` prints it: the names an expression can read, the functions
(from `expr.FUNCTIONS` and their docstrings), the operators and quoting, the normalized
alert's fields (from the `Alert` model) and the playbook's fields (from the models the
loader uses). A test keeps the committed page equal to this output, so the page cannot
describe a function or a field the code does not have.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from irbook import expr
from irbook.model import (
    Acknowledgement,
    Actor,
    Alert,
    Approval,
    AwsTarget,
    InputSpec,
    Metadata,
    Playbook,
    Resource,
    Step,
    Trigger,
)
from irbook.model.base import DURATION_SCHEMA, format_duration

# What each root name holds. The test checks these are exactly expr.ROOTS.
NAMES = {
    "alert": "The normalized alert that started the run (fields below); a hand-started run "
    "has `alert.id == 'manual'`.",
    "inputs": "The playbook's inputs, typed: `--param`, then the alert (`from:`), then `default`.",
    "steps": "Earlier steps: `steps.<id>.status` (succeeded, failed, skipped, rejected, "
    "cancelled) and `steps.<id>.outputs` (the action's result; a list of results for "
    "`for_each`).",
    "item": "In a `for_each` step: the current item of the list.",
    "run": "The run itself (fields below).",
}

# run.* fields, as the engine and the planner fill them (the test compares the keys).
RUN_FIELDS = {
    "id": "The run id (`irbook runs show ID`)",
    "mode": "`live`, `dry-run`, or `plan` in `irbook plan`",
    "dry_run": "true unless the run is live",
    "playbook": "The playbook id",
    "started_by": "Who started it: `cli:alice`, `webhook:guardduty-prod`",
    "incident_key": "Stable for one playbook and alert id: `irbook-` and 12 hex digits",
    "severity": "The playbook's `metadata.severity`",
    "step": "The id of the step being evaluated",
}

OPERATORS = [
    ("`a.b`, `a['b']`, `a[0]`", "property and index access; missing things are null"),
    ("`==`, `!=`", "equality; `true` never equals `1`"),
    ("`<`, `<=`, `>`, `>=`", "numbers with numbers, text with text; anything else is an error"),
    ("`x in y`, `x not in y`", "`contains(y, x)`"),
    ("`and` (`&&`), `or` (`||`), `not` (`!`)", "short-circuit; they yield an operand's value"),
    ("`( )`", "grouping"),
    ("`[a, b]`", "a list literal: `alert.type in ['a', 'b']`"),
    (
        "`'text'`, `\"text\"`, `1`, `2.5`, `true`, `false`, `null`",
        "literals (`True`, `False`, `None` also work)",
    ),
]


def _doc(obj: Any) -> str:
    return " ".join(inspect.cleandoc(obj.__doc__ or "").split())


def _is_duration(prop: dict[str, Any]) -> bool:
    return prop.get("anyOf") == DURATION_SCHEMA["anyOf"]


def schema_type(prop: dict[str, Any], bar: str = " \\| ") -> str:
    """A property's JSON Schema in a few words: what editors check, as people read it
    (`bar` separates the choices of an enum: escaped for Markdown tables by default)."""
    if _is_duration(prop):
        return "duration"
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "const" in prop:
        return json.dumps(prop["const"])
    if "enum" in prop:
        return bar.join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(schema_type(p, bar) for p in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {schema_type(prop.get('items', {}), bar)}" if prop.get("items") else "list"
    if kind == "object":
        values = prop.get("additionalProperties")
        return (
            f"map of {schema_type(values, bar)}"
            if isinstance(values, dict) and values
            else "object"
        )
    if kind == "string" and prop.get("format") == "date-time":
        return "time (ISO-8601)"
    return str(kind) if kind else "any"


def _default(info: FieldInfo, prop: dict[str, Any]) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "-"
    if _is_duration(prop) or ("anyOf" in prop and any(_is_duration(p) for p in prop["anyOf"])):
        return f"`{format_duration(float(value))}`"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return "`" + json.dumps(value) + "`"


def _fields(model: type[BaseModel], *, with_default: bool = True) -> list[str]:
    props = model.model_json_schema(by_alias=True)["properties"]
    if with_default:
        rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    else:
        rows = ["| field | type | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        shown = info.alias or name
        prop = props[shown]
        text = (info.description or "").replace("|", "\\|")
        kind = schema_type(prop)
        if with_default:
            rows.append(f"| `{shown}` | {kind} | {_default(info, prop)} | {text} |")
        else:
            rows.append(f"| `{shown}` | {kind} | {text} |")
    return rows


def expressions_reference() -> str:
    """The Markdown page, ending in one newline."""
    out: list[str] = [
        "# Playbook expressions and the normalized alert",
        "",
        "> Generated by `irbook schema --expressions` from the code that evaluates "
        "expressions and loads playbooks; do not edit by hand.",
        "",
        "A string in a playbook may hold expressions between `${{` and `}}`. A string that is "
        "one expression and nothing else yields the expression's value (a list, a number, "
        "an object); otherwise each expression is turned into text in its place "
        "(`null` is empty text, `true`/`false` are lower case, lists and objects are JSON). "
        "Expressions are parsed once, from the playbook's own text: a value that comes from "
        "an alert is data and is never evaluated, even if it holds `${{ }}`.",
        "",
        f"An expression is at most {expr.MAX_EXPR_CHARS} characters and {expr.MAX_DEPTH} "
        "levels deep (brackets, `not`, function calls, each `and`/`or` operand and each "
        "`.name` or `[index]` count one level). There is no arithmetic, no assignment and "
        "no call but the functions below.",
        "",
        "## Names",
        "",
        "| name | holds |",
        "|---|---|",
    ]
    out += [f"| `{name}` | {NAMES[name]} |" for name in expr.ROOTS]
    out += [
        "",
        "A step that reads `steps.X.outputs` of a step X that failed or was skipped is "
        "skipped too (it would run with blanks), unless the read is the first argument of "
        "`default()`, which says a missing value is expected. `steps.X.status` can always be "
        "read.",
        "",
        "## Status functions: `success()`, `failure()`, `always()`",
        "",
        "In a step's `if` only (anywhere else they are a validation error), in the style of "
        "GitHub Actions. They look at the step's upstream: the steps it `needs`, and the "
        "steps those need, transitively (a step skipped because a step before it failed "
        "does not hide that failure). `failure()` is true when an upstream step failed "
        "(whatever its `on_failure`) or its approval was rejected, by an approver or by a "
        "timeout with `on_timeout: reject`; `success()` when none did; `always()` always. "
        "They combine with the operators like any value: "
        "`if: ${{ failure() && inputs.page }}`.",
        "",
        "Without them, a step is skipped when a step it needs failed (`on_failure: abort`), "
        "was rejected, or was skipped for such a reason: `success()` is the implicit "
        "default. A step whose `if` calls `failure()` or `always()` is not skipped for "
        "that; its `if` decides, so it can page or post that containment failed or was "
        "rejected. Two rules still hold for it: a cancelled run starts nothing more, and a "
        "step that reads the outputs of a step that did not succeed is skipped unless the "
        "read is inside `default()`. `failure()` in a step with no `needs` is an error "
        "(nothing runs before it). The run's verdict is not changed by such a step: a run "
        "whose containment failed is failed (or rejected) even when the step that reports "
        "it succeeded. `irbook plan` shows why such a step runs "
        "(`why: failure() — step 'revoke' failed`), and drill summaries and reports too "
        "(`ran: failure() — step 'revoke' failed`). The planner assumes approvals are "
        "given; drills and runs follow the real decisions.",
        "",
        "```yaml",
        "- id: page",
        "  action: pagerduty.trigger",
        "  needs: [revoke, snapshot]",
        "  if: ${{ failure() }}",
        "```",
        "",
        "### `run`",
        "",
        "| field | holds |",
        "|---|---|",
    ]
    out += [f"| `run.{name}` | {text} |" for name, text in RUN_FIELDS.items()]
    out += ["", "## Functions", "", "| function | what it gives |", "|---|---|"]
    for name, (func, (low, high)) in expr.FUNCTIONS.items():
        params = list(inspect.signature(func).parameters)
        shown = ", ".join(p if i < low else f"{p}?" for i, p in enumerate(params[:high]))
        out.append(f"| `{name}({shown})` | {_doc(func)} |")
    out += ["", "## Operators and literals", "", "| syntax | meaning |", "|---|---|"]
    out += [f"| {syntax} | {text} |" for syntax, text in OPERATORS]
    out += [
        "",
        "## Quoting",
        "",
        "Text literals take single or double quotes. In single quotes, write a quote as two "
        "(`'it''s'`); in either, `\\n`, `\\t`, `\\r`, `\\\\`, `\\'` and `\\\"` are escapes "
        "and any other backslash is an error. YAML reads the line first, so quote the whole "
        "YAML value when the expression holds a quote or starts it:",
        "",
        "```yaml",
        "if: \"${{ inputs.endpoint_name != '' }}\"",
        "text: >-",
        "  Key ${{ inputs.access_key_id }} deactivated "
        "(ticket ${{ default(steps.ticket.outputs.key, 'not opened') }})",
        "```",
        "",
        "## The normalized alert",
        "",
        "Every source's payload becomes this shape before it meets a playbook (`alert.*`); "
        "`irbook schema --receiver --markdown` says how each format fills it.",
        "",
    ]
    out += _fields(Alert, with_default=False)
    out += ["", "### `alert.actor`", ""]
    out += _fields(Actor, with_default=False)
    out += ["", "### `alert.resources[]`", ""]
    out += _fields(Resource, with_default=False)
    out += [
        "",
        "## Playbook fields",
        "",
        "The same models the loader uses (`irbook schema` prints them as JSON Schema). "
        "Durations are text such as `30s`, `15m`, `1h30m`, `500ms`, or a number of seconds.",
        "",
    ]
    sections: list[tuple[str, type[BaseModel]]] = [
        ("Playbook", Playbook),
        ("metadata", Metadata),
        ("inputs.NAME", InputSpec),
        ("triggers[]", Trigger),
        ("steps[]", Step),
        ("steps[].approval", Approval),
        ("aws, steps[].aws", AwsTarget),
        ("acknowledge[] (steps[] and metadata)", Acknowledgement),
    ]
    for title, model in sections:
        out += [f"### {title}", ""]
        doc = _doc(model)
        if doc and model is not Playbook:
            out += [doc, ""]
        out += _fields(model)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
