"""YAML -> Playbook, with every problem in a file reported in one pass as path:line:col.

Three layers, each collecting all it finds: the YAML source (source.py), the structure
(pydantic), and the meaning (actions exist, parameters fit them, expressions parse and
refer to inputs and upstream steps, `needs` has no cycles).
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from irbook import expr
from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.model import Alert, Playbook, Step
from irbook.model.base import parse_duration
from irbook.model.playbook import ATLAS_ID_PATTERN, MAX_STEPS
from irbook.plan import upstream_of
from irbook.registry import REGISTRY, ActionSpec, Registry, unknown_action_message
from irbook.source import Path, Source, default_playbook_dirs, load_file, playbook_files
from irbook.validate import duplicate_id, find_playbook

_ATLAS_ID = re.compile(ATLAS_ID_PATTERN)


@dataclass
class Loaded:
    playbook: Playbook
    source: Source
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.source.path


# --- pydantic errors -> one readable line each -----------------------------------


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return _unwrap(models[0] if models else args[0]) if args else annotation
    return annotation


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that a location inside `model` points into (for 'did you mean')."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {(f.alias or name): f for name, f in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
            continue
        origin = typing.get_origin(current)
        if origin in (list, tuple) or (origin is dict and not isinstance(part, int)):
            current = typing.get_args(current)[-1]
            continue
        return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [(f.alias or name) for name, f in model.model_fields.items()]


def _loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _friendly(error: Any, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    name = _loc_text(loc)
    where = f"'{name}'" if name else "document"
    if kind == "missing":
        return f"missing required field '{loc[-1]}'" + (
            f" in '{_loc_text(loc[:-1])}'" if len(loc) > 1 else ""
        )
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(str(loc[-1]), _field_names(parent), n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
            else:
                hint = f" (allowed: {', '.join(_field_names(parent))})"
        return f"unknown field '{loc[-1]}'{hint}"
    value = error.get("input")
    got = expr.type_name(value) if not isinstance(value, BaseModel) else "object"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where}: {value!r} is not one of {expected}"
    if kind == "string_pattern_mismatch":
        return f"{where}: {value!r} does not match {error['ctx']['pattern']}"
    simple = {k: v for k, v in _TYPE_KINDS.items() if v}
    if kind == "too_long":
        ctx = error.get("ctx", {})
        return f"{where}: at most {ctx.get('max_length')} items, found {ctx.get('actual_length')}"
    if kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return f"{where}: must not be empty"
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        ctx = error.get("ctx", {})
        bound = next(iter(ctx.values()), "?")
        words = {
            "less_than_equal": "at most",
            "greater_than_equal": "at least",
            "less_than": "less than",
            "greater_than": "more than",
        }[kind]
        return f"{where}: must be {words} {_number(bound)}, got {_number(value)}"
    if kind in simple:
        return f"{where}: expected {simple[kind]}, got {got}"
    msg = str(error.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}"


def _real_loc(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[tuple[Any, ...], bool]:
    """The part of a pydantic location that exists in the data, and whether it ends on a
    dict key. pydantic adds tags of its own (union members such as 'str', '[key]' for
    keys, 'function-after[...]'); a user's key may look like one, so the data decides."""
    real: list[Any] = []
    on_key = False
    for n, part in enumerate(loc):
        if part == "[key]":
            on_key = True
            continue
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            real.append(part)
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            real.append(part)
            data = data[part]
        elif kind == "missing" and n == len(loc) - 1 and isinstance(data, dict):
            real.append(part)  # a missing field: located at the mapping it belongs in
        # anything else is a tag of pydantic's own: dropped
    return tuple(real), on_key


_TYPE_KINDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "literal_error": "",
}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def pydantic_diagnostics(
    exc: ValidationError,
    model: type[BaseModel],
    source: Source,
    prefix: Path = (),
    *,
    step_of: Any = None,
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    data = _get_path(source.data, prefix)
    grouped: dict[tuple[tuple[Any, ...], bool], list[Any]] = {}
    for error in exc.errors(include_url=False):
        loc, on_key = _real_loc(data, tuple(error["loc"]), error["type"])
        grouped.setdefault((loc, on_key or error["type"] == "extra_forbidden"), []).append(error)
    for (loc, at_key), errors in grouped.items():
        full = (*prefix, *loc)
        location = source.at(full, key=at_key)
        step = step_of(full) if step_of else None
        kinds = [e["type"] for e in errors]
        if len(errors) > 1 and all(k in _TYPE_KINDS and k != "literal_error" for k in kinds):
            # a union (str | list, ...): one error naming every accepted type
            wants = " or ".join(dict.fromkeys(_TYPE_KINDS[k] for k in kinds))
            name = _loc_text(loc)
            got = expr.type_name(errors[0].get("input"))
            messages = [f"'{name}': expected {wants}, got {got}"]
        else:
            messages = [_friendly(error, model, loc) for error in errors]
        for message in dict.fromkeys(messages):
            if step and len(loc) > 2:
                message = message.replace(f"'{_loc_text(loc[:2])}.", f"step '{step}' field '", 1)
            out.append(Diagnostic(location, message, step=step))
    return out


# --- the playbook ------------------------------------------------------------------


class _Checker:
    """Semantic checks on a structurally valid playbook (or its valid parts)."""

    def __init__(self, source: Source, registry: Registry) -> None:
        self.source = source
        self.registry = registry
        self.diags: list[Diagnostic] = []

    def error(self, loc: Path, message: str, *, key: bool = False, step: str | None = None) -> None:
        self.diags.append(Diagnostic(self.source.at(loc, key=key), message, step=step))

    def error_at(self, location: Location, message: str, step: str | None = None) -> None:
        self.diags.append(Diagnostic(location, message, step=step))

    def expr_location(self, loc: Path, offset: int) -> Location:
        """Where character `offset` of the string at `loc` stands in the file.

        The `${{ ... }}` around the offset is looked up in the file's text from the
        scalar's start on (block scalars, quotes and escapes shift columns otherwise);
        a plain one-line scalar maps by column; failing both, the scalar itself.
        """
        base = self.source.at(loc)
        value = _get_path(self.source.data, loc)
        if not isinstance(value, str) or not base.line:
            return base
        start = value.rfind(expr.OPEN, 0, offset + len(expr.OPEN))
        if start >= 0:
            end = value.find(expr.CLOSE, offset)
            segment = value[start : end + len(expr.CLOSE)] if end >= 0 else value[start:]
            skip = value.count(segment, 0, start)  # the same expression written earlier
            lines = self.source.text.split("\n")
            for number in range(base.line - 1, min(len(lines), base.line + 500)):
                line = lines[number]
                col = line.find(segment, base.col - 1 if number == base.line - 1 else 0)
                while col >= 0 and skip:
                    skip -= 1
                    col = line.find(segment, col + 1)
                if col >= 0:
                    return Location(base.path, number + 1, col + 1 + (offset - start))
        if "\n" not in value and loc not in self.source.styles:
            return Location(base.path, base.line, base.col + offset)
        return base


def _get_path(data: Any, loc: Path) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _strings(value: Any, loc: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*loc, i))


ALERT_FIELDS = set(Alert.model_fields)
ACTOR_FIELDS = {"user_name", "principal_arn", "access_key_id", "ip"}
RESOURCE_FIELDS = {"type", "id", "arn", "name", "region", "tags"}
RUN_FIELDS = {"id", "mode", "dry_run", "playbook", "started_by", "incident_key", "severity"}


def find_cycle(steps: dict[str, Step]) -> list[str] | None:
    """One cycle in `needs`, as the path that closes it, or None. Iterative: no recursion."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in steps:
        if root in state:
            continue
        path: list[str] = [root]
        iters = [iter(steps[root].needs)]
        state[root] = 1
        while path:
            need = next(iters[-1], None)
            if need is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if need not in steps or need == path[-1]:
                continue  # unknown and self needs are reported on their own
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state:
                state[need] = 1
                path.append(need)
                iters.append(iter(steps[need].needs))
    return None


def _check_reference(
    checker: _Checker,
    ref: expr.Reference,
    *,
    loc: Path,
    offset: int,
    playbook_inputs: set[str],
    step: Step | None,
    upstream: set[str],
    steps: dict[str, Step],
    specs: dict[str, ActionSpec],
    in_outputs: bool,
    upstream_map: dict[str, set[str]],
    in_for_each: bool = False,
) -> None:
    path = ref.path
    at = checker.expr_location(loc, offset + ref.offset)
    sid = step.id if step else None
    root = path[0]
    if root not in expr.ROOTS:
        close = difflib.get_close_matches(root, expr.ROOTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (use {', '.join(expr.ROOTS)})"
        checker.error_at(at, f"unknown name '{root}' in expression{hint}", sid)
        return
    if root == "inputs":
        if len(path) < 2:
            return
        if path[1] not in playbook_inputs:
            close = difflib.get_close_matches(path[1], sorted(playbook_inputs), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            checker.error_at(at, f"unknown input '{path[1]}'{hint}", sid)
    elif root == "item":
        if in_for_each:
            checker.error_at(
                at,
                "'item' cannot be used in for_each itself: it is each value for_each yields",
                sid,
            )
        elif step is None or step.for_each is None:
            checker.error_at(at, "'item' is only defined in a step with for_each", sid)
    elif root == "run":
        if len(path) >= 2 and path[1] not in RUN_FIELDS:
            known = ", ".join(sorted(RUN_FIELDS))
            checker.error_at(at, f"unknown run field '{path[1]}' (known: {known})", sid)
    elif root == "alert":
        if len(path) >= 2:
            top = path[1]
            if top not in ALERT_FIELDS:
                close = difflib.get_close_matches(top, sorted(ALERT_FIELDS), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                checker.error_at(at, f"unknown alert field '{top}'{hint}", sid)
            elif top == "actor" and len(path) >= 3 and path[2] not in ACTOR_FIELDS:
                known = ", ".join(sorted(ACTOR_FIELDS))
                checker.error_at(at, f"unknown alert.actor field '{path[2]}' (known: {known})", sid)
    elif root == "steps":
        if len(path) < 2:
            checker.error_at(at, "use steps.<id>.outputs.<name>", sid)
            return
        target = path[1]
        if target not in steps:
            close = difflib.get_close_matches(target, sorted(steps), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            checker.error_at(at, f"unknown step '{target}'{hint}", sid)
            return
        if step is not None and target == step.id:
            checker.error_at(at, f"step '{target}' cannot read its own outputs", sid)
            return
        if (
            not in_outputs
            and target not in upstream
            and step is not None
            and (step.id in upstream_map.get(target, set()))
        ):
            checker.error_at(
                at,
                f"step '{target}' runs after this step (it needs '{step.id}'), "
                "so its outputs cannot be read here",
                sid,
            )
            return
        if not in_outputs and target not in upstream:
            checker.error_at(
                at,
                f"step '{target}' is not upstream of this step: add it to needs "
                f"(needs: [{target}]) so that its outputs exist when this step runs",
                sid,
            )
            return
        if len(path) >= 3 and path[2] not in ("outputs", "status"):
            checker.error_at(at, f"steps.{target} has 'outputs' and 'status', not '{path[2]}'", sid)
            return
        if len(path) >= 4 and path[2] == "outputs":
            spec = specs.get(steps[target].action)
            if spec is not None:
                names = _field_names(spec.result)
                if path[3] not in names:
                    close = difflib.get_close_matches(path[3], names, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    checker.error_at(
                        at,
                        f"action {spec.key} has no output '{path[3]}'{hint}; "
                        f"it outputs: {', '.join(names) or 'nothing'}",
                        sid,
                    )


def _check_expressions(
    checker: _Checker,
    value: Any,
    loc: Path,
    **kwargs: Any,
) -> None:
    step: Step | None = kwargs.get("step")
    for sub_loc, text in _strings(value, loc):
        if expr.OPEN not in text:
            continue
        try:
            template = expr.parse_template(text)
        except expr.ExprError as exc:
            checker.error_at(
                checker.expr_location(sub_loc, exc.offset),
                f"invalid expression: {exc.message}",
                step.id if step else None,
            )
            continue
        in_if = len(loc) == 3 and loc[0] == "steps" and loc[2] == "if"
        for node, offset in template.expressions:
            for ref in expr.references(node):
                _check_reference(checker, ref, loc=sub_loc, offset=offset, **kwargs)
            for call in expr.status_calls(node):
                at = checker.expr_location(sub_loc, offset + call.offset)
                sid = step.id if step else None
                if not in_if:
                    checker.error_at(
                        at,
                        f"{call.func}() can only be used in a step's if (it says whether "
                        "the steps upstream of the step failed)",
                        sid,
                    )
                elif call.func == "failure" and step is not None and not step.needs:
                    checker.error_at(
                        at,
                        f"failure() is never true here: step '{step.id}' has no needs, so "
                        "no step runs before it (add the steps it reports on to needs)",
                        sid,
                    )


def _check_params(checker: _Checker, spec: ActionSpec, step: Step, index: int) -> None:
    loc: Path = ("steps", index, "with")
    allowed = _field_names(spec.params)
    for key in step.with_:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = (
                f" (did you mean '{close[0]}'?)"
                if close
                else f" (it takes: {', '.join(allowed) or 'no parameters'})"
            )
            checker.error(
                (*loc, key),
                f"action {spec.key} has no parameter '{key}'{hint}",
                key=True,
                step=step.id,
            )
    try:
        spec.params.model_validate(step.with_)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            eloc = tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                continue  # reported above with a hint
            if _through_expression(step.with_, eloc):
                continue  # decided at run time
            if not eloc and any(expr.is_template(s) for _, s in _strings(step.with_, ())):
                continue  # a cross-field rule over values not known yet
            if error["type"] == "missing":
                checker.error(
                    ("steps", index, "action"),
                    f"action {spec.key} needs parameter '{eloc[-1]}' (missing from 'with')",
                    step=step.id,
                )
                continue
            checker.diags.append(
                Diagnostic(
                    checker.source.at((*loc, *eloc)),
                    f"{spec.key}: " + _friendly(error, spec.params, ("with", *eloc)),
                    step=step.id,
                )
            )


def _through_expression(data: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if expr.is_template(data):
            return True
        data = _get_path(data, (part,))
        if data is None:
            return False
    return expr.is_template(data) or (
        isinstance(data, dict | list) and any(expr.is_template(s) for _, s in _strings(data, ()))
    )


def _lenient_step(raw: Any) -> Step | None:
    """A step with its invalid fields dropped, so that the rest can still be checked."""
    if not isinstance(raw, dict):
        return None
    try:
        return Step.model_validate(raw)
    except ValidationError as exc:
        bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
        if bad & {"id", "action"}:
            return None
        try:
            return Step.model_validate({k: v for k, v in raw.items() if k not in bad})
        except ValidationError:
            return None


def _check_atlas(checker: _Checker, ids: list[Any]) -> None:
    """Each well-formed `metadata.atlas` id must be in the shipped ATLAS list (a typo
    would otherwise put a playbook under the wrong technique, or none, in the coverage
    page); malformed ids are the structure check's to report."""
    from irbook.atlas import atlas

    known = atlas()
    for n, value in enumerate(ids):
        if isinstance(value, str) and _ATLAS_ID.fullmatch(value) and value not in known.techniques:
            checker.error(("metadata", "atlas", n), known.unknown_message(value))


def check_playbook(
    raw: dict[str, Any], source: Source, registry: Registry, model: Playbook | None
) -> list[Diagnostic]:
    """Meaning checks, run on whichever parts of the document are structurally valid."""
    checker = _Checker(source, registry)
    meta = raw.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("atlas"), list) and meta["atlas"]:
        _check_atlas(checker, meta["atlas"])
    raw_steps: list[Any] = raw["steps"] if isinstance(raw.get("steps"), list) else []
    if len(raw_steps) > MAX_STEPS:
        return []  # the structure check reports it; graph checks would be quadratic
    steps: dict[str, Step] = {}
    indexes: dict[str, int] = {}
    duplicates: list[tuple[int, Step]] = []
    for index, raw_step in enumerate(raw_steps):
        if model is not None:
            step = model.steps[index]
        else:
            maybe = _lenient_step(raw_step)
            if maybe is None:
                if isinstance(raw_step, dict) and isinstance(raw_step.get("id"), str):
                    indexes.setdefault(raw_step["id"], index)
                continue
            step = maybe
        if step.id in indexes:
            checker.error(
                ("steps", index, "id"),
                f"duplicate step id '{step.id}' (first at line "
                f"{source.at(('steps', indexes[step.id], 'id')).line})",
                step=step.id,
            )
            duplicates.append((index, step))
            continue
        indexes[step.id] = index
        steps[step.id] = step

    inputs = raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}
    assert isinstance(inputs, dict)
    input_names = set(inputs)

    specs: dict[str, ActionSpec] = {}
    for step_id, step in steps.items():
        index = indexes[step_id]
        spec = registry.find(step.action)
        if spec is None:
            checker.error(
                ("steps", index, "action"),
                unknown_action_message(step.action, registry),
                step=step_id,
            )
            continue
        specs[step_id] = spec
        specs[step.action] = spec
        _check_params(checker, spec, step, index)
        if step.approval is not None and spec.effect == "read" and spec.key != "core.approval":
            pass  # allowed: a human may want to confirm an expensive read
        for n, need in enumerate(step.needs):
            if need == step_id:
                checker.error(
                    ("steps", index, "needs", n), "a step cannot need itself", step=step_id
                )
            elif need not in steps and need not in indexes:
                close = difflib.get_close_matches(need, sorted(indexes), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                checker.error(
                    ("steps", index, "needs", n),
                    f"unknown step '{need}' in needs{hint}",
                    step=step_id,
                )
        if len(set(step.needs)) != len(step.needs):
            checker.error(
                ("steps", index, "needs"), "a step is listed twice in needs", step=step_id
            )

    cycle = find_cycle(steps)
    if cycle:
        first = cycle[0]
        checker.error(
            ("steps", indexes[first], "needs"),
            "cycle in needs: " + " -> ".join(cycle),
            step=first,
        )

    upstream = upstream_of(steps)
    common = {
        "upstream_map": upstream,
        "playbook_inputs": input_names,
        "steps": steps,
        "specs": {s.action: specs[s.id] for s in steps.values() if s.id in specs},
    }
    checked = [(indexes[sid], st) for sid, st in steps.items()] + duplicates
    for index, step in checked:
        step_id = step.id
        for field_name, value in (
            ("with", step.with_),
            ("if", step.if_),
            ("for_each", step.for_each),
        ):
            _check_expressions(
                checker,
                value,
                ("steps", index, field_name),
                step=step,
                upstream=upstream.get(step_id, set()),
                in_outputs=False,
                in_for_each=field_name == "for_each",
                **common,
            )
        if isinstance(step.if_, str) and not expr.is_template(step.if_):
            checker.error(
                ("steps", index, "if"),
                "'if' must be an expression such as \"${{ inputs.endpoint_name != '' }}\"",
                step=step_id,
            )
        if isinstance(step.for_each, str) and not expr.is_template(step.for_each):
            checker.error(
                ("steps", index, "for_each"),
                "'for_each' must be a list or an expression that yields one",
                step=step_id,
            )
    for name, spec_raw in inputs.items():
        if isinstance(spec_raw, dict):
            for key in ("default", "description"):
                if key in spec_raw and key == "default":
                    for sub_loc, text in _strings(spec_raw[key], ("inputs", name, key)):
                        if expr.OPEN in text:
                            checker.error(
                                sub_loc, "input defaults are literal values, not expressions"
                            )
    triggers = raw.get("triggers")
    if isinstance(triggers, list):
        for t_index, trigger in enumerate(triggers):
            match = trigger.get("match") if isinstance(trigger, dict) else None
            if not isinstance(match, dict):
                continue
            for field_path in match:
                top = str(field_path).split(".")[0]
                sub = str(field_path).split(".")[1:2]
                if top not in ALERT_FIELDS or top == "raw":
                    close = difflib.get_close_matches(top, sorted(ALERT_FIELDS), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    checker.error(
                        ("triggers", t_index, "match", field_path),
                        f"unknown alert field '{field_path}' in trigger{hint}",
                        key=True,
                    )
                elif top == "actor" and sub and sub[0] not in ACTOR_FIELDS:
                    checker.error(
                        ("triggers", t_index, "match", field_path),
                        f"unknown alert.actor field '{sub[0]}' in trigger",
                        key=True,
                    )
                elif top == "resources" and sub and sub[0] not in RESOURCE_FIELDS:
                    checker.error(
                        ("triggers", t_index, "match", field_path),
                        f"unknown resource field '{sub[0]}' in trigger",
                        key=True,
                    )
    outputs = raw.get("outputs")
    if isinstance(outputs, dict):
        _check_expressions(
            checker,
            outputs,
            ("outputs",),
            step=None,
            upstream=set(),
            in_outputs=True,
            **common,
        )
    return checker.diags


def load_playbook(path: str, registry: Registry = REGISTRY) -> Loaded:
    """Load and check one playbook; raises LoadFailed with every error in the file."""
    try:
        source = load_file(path)
    except IrbookError as exc:
        raise LoadFailed([Diagnostic(exc.location or Location(path), exc.message)]) from None
    return _from_source(source, registry)


def _from_source(source: Source, registry: Registry) -> Loaded:
    raw = source.data
    if not isinstance(raw, dict):
        got = expr.type_name(raw)
        message = f"expected a playbook mapping at the top level, got {got}"
        raise LoadFailed([Diagnostic(source.at(()), message)])
    if raw.get("kind") not in (None, "Playbook") and "kind" in raw:
        message = f"kind is {raw.get('kind')!r}; expected Playbook"
        raise LoadFailed([Diagnostic(source.at(("kind",)), message)])
    diags: list[Diagnostic] = []
    model: Playbook | None = None
    steps_raw = raw.get("steps")

    def step_of(loc: Path) -> str | None:
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(steps_raw, list):
            idx = loc[1]
            if isinstance(idx, int) and idx < len(steps_raw) and isinstance(steps_raw[idx], dict):
                sid = steps_raw[idx].get("id")
                return sid if isinstance(sid, str) else None
        return None

    try:
        model = Playbook.model_validate(raw)
    except ValidationError as exc:
        diags.extend(pydantic_diagnostics(exc, Playbook, source, step_of=step_of))
    diags.extend(check_playbook(raw, source, registry, model))
    if diags or model is None:
        diags.sort(key=lambda d: (d.location.line, d.location.col))
        raise LoadFailed(_dedupe(diags))
    from irbook.lint import lint_playbook  # lint reads the registry; import when needed

    warnings = lint_playbook(model, source, registry)
    return Loaded(model, source, warnings)


def _dedupe(diags: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[Location, str]] = set()
    out = []
    for d in diags:
        if (d.location, d.message) not in seen:
            seen.add((d.location, d.message))
            out.append(d)
    return out


# --- folders and references ----------------------------------------------------------


@dataclass
class Validation:
    loaded: list[Loaded]
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def validate_paths(paths: Iterable[str], registry: Registry = REGISTRY) -> Validation:
    loaded: list[Loaded] = []
    diags: list[Diagnostic] = []
    ids: dict[str, Loaded] = {}
    for path in playbook_files(paths):
        try:
            item = load_playbook(path, registry)
        except LoadFailed as exc:
            diags.extend(exc.diagnostics)
            continue
        pid = item.playbook.metadata.id
        if pid in ids:
            first = ids[pid]
            first_line = first.source.at(("metadata", "id")).line
            diags.append(
                duplicate_id(pid, item.source.at(("metadata", "id")), first.path, first_line)
            )
            continue
        ids[pid] = item
        loaded.append(item)
        diags.extend(item.warnings)
    return Validation(loaded, diags)


def resolve_playbook(ref: str, registry: Registry = REGISTRY) -> Loaded:
    """A playbook by path, or by id within the playbook folders ($IRBOOK_PLAYBOOKS)."""
    return load_playbook(find_playbook(ref), registry)


def load_alert(path: str) -> Alert:
    """A normalized alert from a JSON or YAML file.

    Errors about the file's content say it is the alert file (`plan` and `run` read a
    playbook too); errors without a line (missing, too large) keep their own words, which
    name the file already, and which a drill puts after the alert's reference.
    """
    try:
        source = load_file(path, kind="alert file")
    except IrbookError as exc:
        if exc.location is None or not exc.location.line:
            raise
        syntax = "invalid YAML: "
        if exc.message.startswith(syntax):
            message = "alert file is not valid JSON or YAML: " + exc.message[len(syntax) :]
        else:
            message = f"alert file: {exc.message}"
        raise IrbookError(message, exc.location) from None
    if not isinstance(source.data, dict):
        raise IrbookError("an alert file must hold a mapping", source.at(()))
    try:
        return Alert.model_validate(source.data)
    except ValidationError as exc:
        diags = pydantic_diagnostics(exc, Alert, source)
        raise LoadFailed(diags) from None


__all__ = [
    "Loaded",
    "Validation",
    "check_playbook",
    "default_playbook_dirs",
    "load_alert",
    "load_playbook",
    "parse_duration",
    "playbook_files",
    "resolve_playbook",
    "validate_paths",
]
