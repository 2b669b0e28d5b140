"""Drill scenario files (kind: Drill) -> a checked scenario, every problem as path:line:col.

Like `load_playbook`, one pass collects every error in the file: the YAML, the structure
(pydantic), and the meaning against the playbook the scenario drills and the alert it
injects. Each error stands at the offending value of the scenario file; errors inside an
alert file stand in that file.

- `playbook`: a path relative to the scenario's folder when it ends in .yaml/.yml or holds
  a '/'; otherwise a playbook id, looked up in the playbook folders ($IRBOOK_PLAYBOOKS, or
  ./playbooks) and then in the `playbooks` folder of the repository the scenario sits in
  (the first one found walking up from the scenario's folder).
- `alert`: a file relative to the scenario's folder, or inline. Without `from`, a
  normalized alert; with it, a raw payload in that format, read by the receiver's own
  normalizer as `irbook match FILE --from FORMAT` reads it (source and format stamped
  the same way), and one of the playbook's triggers must match it, or the scenario is in
  error with the condition that failed: a drill of a raw payload rehearses the path from
  payload to run. A payload that carries several alerts (a Security Hub batch, an
  Alertmanager group) drills with the first of them, silently: that is the alert the
  receiver would start first.
- every step named (in `outputs`, `injects`, `approvers`, `expect`) exists in the
  playbook; approvers decide steps that have an approval gate, once each; `outputs` give
  fields of the step's action result, with values of their types; an outage names a
  namespace the playbook's steps use; `inputs` are the playbook's, checked as a run checks
  them (irbook.plan.resolve_inputs), the alert filling the inputs it provides.

Nothing here imports Prefect or boto3; the normalizers are imported only for raw payloads.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from irbook import expr
from irbook.checked import check_file, find_playbook
from irbook.errors import Diagnostic, IrbookError, LoadFailed, Location
from irbook.files import MAX_FILES, PLAYBOOK_SUFFIXES, default_playbook_dirs, playbook_files
from irbook.loader import Loaded, _get_path, load_alert, load_playbook, pydantic_diagnostics
from irbook.model import Alert, Playbook, Step
from irbook.model.scenario import AlertRef, ApproverDecision, Drill, Expect, Inject
from irbook.plan import PlanError, resolve_inputs
from irbook.registry import REGISTRY, ActionSpec, Registry
from irbook.source import Path, Source, load_file

__all__ = ["LoadedScenario", "load_scenario", "param_text"]

# iam:UpdateAccessKey, slack:chat.postMessage, jira:POST /rest/api/3/issue
CALL_PATTERN = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9][A-Za-z0-9 ./_{}-]*$")
EXPECT_STEP_LISTS = (
    "steps_run",
    "steps_succeeded",
    "steps_skipped",
    "steps_failed",
    "steps_rejected",
)
# Lists that cannot both name a step: a step that ran was not skipped nor rejected, ...
# (steps_run holds the succeeded and the failed steps, so it agrees with both.)
_CONTRADICTIONS = frozenset(
    frozenset(pair)
    for pair in (
        ("steps_run", "steps_skipped"),
        ("steps_run", "steps_rejected"),
        ("steps_succeeded", "steps_skipped"),
        ("steps_succeeded", "steps_failed"),
        ("steps_succeeded", "steps_rejected"),
        ("steps_skipped", "steps_failed"),
        ("steps_skipped", "steps_rejected"),
        ("steps_failed", "steps_rejected"),
    )
)
_MAX_SUGGEST_FILES = 200  # playbooks read to suggest an id when one is not found
_MAX_WALK_UP = 32
_MAX_ENTRIES = 200  # injects and approvers checked (the model allows this many)

M = TypeVar("M", bound=BaseModel)


@dataclass
class LoadedScenario:
    drill: Drill
    source: Source  # the scenario file, for locations
    playbook: Loaded  # the playbook, its source and its lint warnings
    alert: Alert  # the normalized alert
    path: str
    alert_format: str | None = None  # the format of a raw payload (`alert.from`)
    trigger: int | None = None  # the playbook's trigger a raw payload matched


def param_text(value: Any) -> str:
    """An input of the scenario as `--param` text: the drill resolves inputs like a run."""
    return value if isinstance(value, str) else json.dumps(value)


def load_scenario(path: str, registry: Registry = REGISTRY) -> LoadedScenario:
    """Load and check one drill scenario; raises LoadFailed with every error in the file
    (sorted by line; errors inside an alert file follow, at their own locations)."""
    try:
        source = load_file(path)
    except IrbookError as exc:
        raise LoadFailed([Diagnostic(exc.location or Location(path), exc.message)]) from None
    return scenario_from_source(source, registry)


def scenario_from_source(source: Source, registry: Registry = REGISTRY) -> LoadedScenario:
    """`load_scenario` on a file already read (`irbook validate` reads it to see its kind)."""
    raw = source.data
    if not isinstance(raw, dict):
        message = f"expected a drill scenario mapping at the top level, got {expr.type_name(raw)}"
        raise LoadFailed([Diagnostic(source.at(()), message)])
    if "kind" in raw and raw.get("kind") != "Drill":
        message = f"kind is {_clip(raw.get('kind'))}; expected Drill"
        raise LoadFailed([Diagnostic(source.at(("kind",)), message)])
    return _Check(source, registry).run()


# --- the checks ------------------------------------------------------------------


class _Check:
    def __init__(self, source: Source, registry: Registry) -> None:
        self.source = source
        self.raw: dict[str, Any] = source.data
        self.registry = registry
        self.diags: list[Diagnostic] = []
        self.folder = os.path.dirname(source.path)

    def error(self, loc: Path, message: str, *, key: bool = False) -> None:
        self.diags.append(Diagnostic(self.source.at(loc, key=key), message))

    def run(self) -> LoadedScenario:
        drill: Drill | None = None
        try:
            drill = Drill.model_validate(self.raw)
        except ValidationError as exc:
            self.diags.extend(pydantic_diagnostics(exc, Drill, self.source))
        loaded = self.playbook()
        alert = self.alert()
        trigger = None
        if loaded is not None:
            self.against_playbook(loaded.playbook, alert)
            if alert is not None and drill is not None and drill.alert.from_ is not None:
                trigger = self.starts(loaded.playbook, alert)
        self.expectations(loaded.playbook if loaded is not None else None)
        if self.diags or drill is None or loaded is None or alert is None:
            raise LoadFailed(_sorted(self.diags, self.source.path))
        return LoadedScenario(
            drill, self.source, loaded, alert, self.source.path, drill.alert.from_, trigger
        )

    # -- playbook -------------------------------------------------------------------

    def playbook(self) -> Loaded | None:
        ref = self.raw.get("playbook")
        if not isinstance(ref, str) or not ref:
            return None  # the structure check reports it
        loc: Path = ("playbook",)
        if ref.endswith(PLAYBOOK_SUFFIXES) or "/" in ref or os.sep in ref:
            path = os.path.normpath(os.path.join(self.folder, ref))
        else:
            found = self.find_by_id(ref)
            if isinstance(found, str):
                self.error(loc, found)
                return None
            path = found[0]
        try:
            return load_playbook(path, self.registry)
        except LoadFailed as exc:
            first = exc.diagnostics[0] if exc.diagnostics else None
            if first is None:
                self.error(loc, f"playbook {_clip(ref)} does not validate")
            elif not first.location.line:  # the file itself: missing, too big, binary
                shown = f" ({first.location.path})" if path != ref else ""
                self.error(loc, f"playbook {_clip(ref)}: {first.message}{shown}")
            else:
                more = len(exc.diagnostics) - 1
                tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
                self.error(
                    loc,
                    f"playbook {_clip(ref)} does not validate: "
                    f"{first.location}: {first.message}{tail}",
                )
        except IrbookError as exc:  # an action module that cannot be imported, ...
            self.error(loc, f"playbook {_clip(ref)}: {exc.message}")
        return None

    def find_by_id(self, ref: str) -> tuple[str] | str:
        """(path,) of the playbook with this id, or the message saying where it is not."""
        folders = list(default_playbook_dirs())
        try:
            path = find_playbook(ref)
        except IrbookError:
            path = None
        if path is not None and os.path.isfile(path):
            return (path,)
        repo = repository_playbooks(self.folder)
        known = {os.path.realpath(f) for f in folders}
        if repo is not None and os.path.realpath(repo) not in known:
            folders.append(repo)
            for pid, found in _playbook_ids([repo], cheap=ref):
                if pid == ref:
                    return (found,)
        ids = sorted({pid for pid, _ in _playbook_ids(folders)})
        close = difflib.get_close_matches(ref, ids, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = ", ".join(folders)
        return f"playbook {_clip(ref)}: not found in {where}{hint}"

    # -- alert ----------------------------------------------------------------------

    def alert(self) -> Alert | None:
        raw_ref = self.raw.get("alert")
        ref = _valid(AlertRef, raw_ref)
        if ref is None:
            return None  # the structure check reports it
        if ref.from_ is not None:
            from irbook.triggers.normalizers import NORMALIZERS

            if ref.from_ not in NORMALIZERS:
                known = sorted(NORMALIZERS)
                close = difflib.get_close_matches(ref.from_, known, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.error(
                    ("alert", "from"),
                    f"unknown alert format {_clip(ref.from_)}{hint}; known: {', '.join(known)}",
                )
                return None
        if ref.normalized is not None:
            try:
                return Alert.model_validate(ref.normalized)
            except ValidationError as exc:
                for diag in pydantic_diagnostics(exc, Alert, self.source, ("alert", "normalized")):
                    # "'severity': ..." -> "'alert.normalized.severity': ..."
                    message = diag.message
                    if message.startswith("'") and not message.startswith("''"):
                        message = "'alert.normalized." + message[1:]
                    self.diags.append(diag._replace(message=message))
                return None
        if ref.file is not None:
            path = os.path.normpath(os.path.join(self.folder, ref.file))
            if ref.from_ is None:
                try:
                    return load_alert(path)
                except LoadFailed as exc:
                    self.diags.extend(exc.diagnostics)
                except IrbookError as exc:
                    self.file_problem(exc, ref.file, path)
                return None
            try:
                payload_source = load_file(path)
            except IrbookError as exc:
                self.file_problem(exc, ref.file, path)
                return None
            return self.normalize(ref.from_, payload_source, ())
        assert ref.from_ is not None  # AlertRef: a raw payload comes with its format
        return self.normalize(ref.from_, self.source, ("alert", "raw"))

    def file_problem(self, exc: IrbookError, ref: str, path: str) -> None:
        """A problem with an alert file: in it when it has a line, else at `alert.file`."""
        if exc.location is not None and exc.location.line:
            self.diags.append(Diagnostic(exc.location, exc.message))
            return
        where = exc.location.path if exc.location is not None else path  # escaped there
        shown = f" ({where})" if path != ref else ""
        self.error(("alert", "file"), f"alert file {_clip(ref)}: {exc.message}{shown}")

    def normalize(self, fmt: str, source: Source, prefix: Path) -> Alert | None:
        """A raw payload (the data at `prefix` in `source`) through its format's normalizer.
        A payload of several alerts drills the first, without a word (module docstring)."""
        from irbook.triggers.normalizers import NormalizeError, normalize_as

        payload = _get_path(source.data, prefix)
        try:
            alerts = normalize_as(fmt, payload)
        except NormalizeError as exc:
            parts = json_path(exc.path)
            self.diags.append(
                Diagnostic(
                    source.at((*prefix, *parts)),
                    f"not a {fmt} payload: {exc.path}: {exc.reason}",
                )
            )
            return None
        except Exception as exc:  # a normalizer bug must not hide the rest of the file
            self.diags.append(
                Diagnostic(source.at(prefix), f"the {fmt} normalizer failed: {type(exc).__name__}")
            )
            return None
        if not alerts:
            self.diags.append(
                Diagnostic(source.at(prefix), f"the {fmt} payload holds no alert to drill")
            )
            return None
        return alerts[0]

    def starts(self, playbook: Playbook, alert: Alert) -> int | None:
        """The playbook's trigger the raw payload's alert matches, as the receiver and
        `irbook match` decide it; without one, an error saying which condition failed."""
        from irbook.triggers.match import playbook_verdict

        verdict = playbook_verdict(playbook.triggers, alert)
        if verdict.trigger is None:
            self.error(
                ("alert",),
                f"the alert does not start playbook '{playbook.metadata.id}': {verdict.why()}",
                key=True,
            )
        return verdict.trigger

    # -- references to the playbook ----------------------------------------------------

    def against_playbook(self, playbook: Playbook, alert: Alert | None) -> None:
        steps = {s.id: s for s in playbook.steps}
        self.outputs(steps)
        self.injects(steps)
        self.approvers(steps)
        self.inputs(playbook, alert)

    def known_step(
        self, step_id: str, steps: dict[str, Step], loc: Path, *, key: bool = False
    ) -> bool:
        if step_id in steps:
            return True
        names = list(steps)
        close = difflib.get_close_matches(step_id, names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (steps: {', '.join(names)})"
        self.error(loc, f"unknown step {_clip(step_id)}{hint}", key=key)
        return False

    def outputs(self, steps: dict[str, Step]) -> None:
        outputs = self.raw.get("outputs")
        if not isinstance(outputs, dict):
            return
        for step_id, value in outputs.items():
            loc: Path = ("outputs", step_id)
            if not self.known_step(step_id, steps, loc, key=True):
                continue
            step = steps[step_id]
            spec = self.registry.find(step.action)
            if spec is None:
                continue  # the playbook loaded: cannot happen
            if spec.pure:
                self.error(
                    loc,
                    f"step '{step_id}' runs {spec.key}, which has no I/O and runs as itself in "
                    "a drill: its outputs cannot be set",
                    key=True,
                )
                continue
            if isinstance(value, dict):
                self.output_fields(spec, value, loc)
            elif isinstance(value, list) and step.for_each is not None:
                for index, item in enumerate(value):
                    if isinstance(item, dict):
                        self.output_fields(spec, item, (*loc, index))
                    else:
                        self.error(
                            (*loc, index),
                            f"outputs of step '{step_id}' item {index}: expected a mapping of "
                            f"{spec.key} result fields, got {expr.type_name(item)}",
                        )
            elif isinstance(value, list):
                self.error(
                    loc,
                    f"outputs of step '{step_id}': a list is for a for_each step (one mapping "
                    f"per item); give one mapping of {spec.key} result fields",
                )
            else:
                wanted = "a mapping" + (" or a list of mappings" if step.for_each else "")
                self.error(
                    loc,
                    f"outputs of step '{step_id}': expected {wanted} of {spec.key} result "
                    f"fields, got {expr.type_name(value)}",
                )

    def output_fields(self, spec: ActionSpec, given: dict[str, Any], loc: Path) -> None:
        fields = spec.result.model_fields
        names = {(f.alias or name): name for name, f in fields.items()}
        names.update({name: name for name in fields})
        shown = [(f.alias or name) for name, f in fields.items()]
        known: dict[str, Any] = {}
        for key in given:
            if key in names:
                known[key] = names[key]
                continue
            close = difflib.get_close_matches(key, shown, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"fields: {', '.join(shown)}"
            self.error((*loc, key), f"unknown output {_clip(key)} of {spec.key} ({hint})", key=True)
        if not known:
            return
        # Only the given fields: the drill lays them over the step's simulated result.
        partial = create_model(  # type: ignore[call-overload]
            f"{spec.result.__name__}Output",
            __config__=ConfigDict(**{**spec.result.model_config, "populate_by_name": True}),
            **{names[k]: (fields[names[k]].annotation, fields[names[k]]) for k in known},
        )
        try:
            partial.model_validate({k: given[k] for k in known})
        except ValidationError as exc:
            for diag in _merge_literals(pydantic_diagnostics(exc, partial, self.source, loc)):
                self.diags.append(diag._replace(message=f"{spec.key} output {diag.message}"))

    def injects(self, steps: dict[str, Step]) -> None:
        namespaces = _namespaces(steps.values())
        firsts: dict[tuple[str, str], int] = {}
        for index, entry in _entries(self.raw.get("injects"), Inject):
            loc: Path = ("injects", index)
            if entry.at_step is not None and not self.known_step(
                entry.at_step, steps, (*loc, "at_step")
            ):
                continue
            kind = entry.kind
            if kind in ("fail", "delay") and entry.at_step is not None:
                first = firsts.setdefault((kind, entry.at_step), index)
                if first != index:
                    line = self.source.at(("injects", first)).line
                    self.error(
                        (*loc, kind),
                        f"a second '{kind}' inject for step '{entry.at_step}' (first at line "
                        f"{line}); give one",
                    )
            if kind != "outage" or entry.outage is None:
                continue
            outage = entry.outage
            if entry.at_step is not None:
                action = steps[entry.at_step].action
                if not _in_namespace(action, outage):
                    self.error(
                        (*loc, "outage"),
                        f"outage {_clip(outage)} does not touch step '{entry.at_step}', "
                        f"which runs {action}",
                    )
            elif not any(_in_namespace(s.action, outage) for s in steps.values()):
                close = difflib.get_close_matches(outage, namespaces, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                self.error(
                    (*loc, "outage"),
                    f"outage {_clip(outage)} touches no step of the playbook "
                    f"({hint}it uses: {', '.join(namespaces)})",
                )

    def approvers(self, steps: dict[str, Step]) -> None:
        firsts: dict[str, int] = {}
        counts: dict[str, int] = {}  # a two-person gate takes two entries
        gated = [s.id for s in steps.values() if _gated(s)]
        for index, entry in _entries(self.raw.get("approvers"), ApproverDecision):
            loc: Path = ("approvers", index, "step")
            if not self.known_step(entry.step, steps, loc):
                continue
            if not _gated(steps[entry.step]):
                self.error(loc, f"step '{entry.step}' has no approval gate{_gates(gated)}")
                continue
            first = firsts.setdefault(entry.step, index)
            counts[entry.step] = counts.get(entry.step, 0) + 1
            gate = steps[entry.step].approval
            needed = gate.min_approvers if gate is not None else 1
            if first != index and counts[entry.step] > needed:
                line = self.source.at(("approvers", first)).line
                if needed == 1:
                    self.error(
                        loc,
                        f"a second approver entry for step '{entry.step}' (first at line "
                        f"{line}); a gate is decided once",
                    )
                else:
                    self.error(
                        loc,
                        f"more approver entries for step '{entry.step}' than the {needed} it"
                        f" needs (first at line {line})",
                    )

    def inputs(self, playbook: Playbook, alert: Alert | None) -> None:
        given = self.raw.get("inputs")
        if not isinstance(given, dict):
            given = {}  # the structure check reports a non-mapping
        takes = sorted(playbook.inputs)
        for name in given:
            if name not in playbook.inputs:
                close = difflib.get_close_matches(name, takes, n=1, cutoff=0.6)
                hint = (
                    f" (did you mean '{close[0]}'?)"
                    if close
                    else f" (playbook {playbook.metadata.id} takes: {', '.join(takes) or 'none'})"
                )
                self.error(("inputs", name), f"unknown input {_clip(name)}{hint}", key=True)
        context = alert.as_context() if alert is not None else None
        for name, spec in playbook.inputs.items():
            if name not in given and context is None:
                continue  # whether the alert provides it is unknown: its error stands
            value = given.get(name)
            if spec.type == "string" and name in given and not isinstance(value, str):
                # YAML reads 1.10 as 1.1 and 012 as 12: text must be written as text
                hint = " (quote it)" if not isinstance(value, dict | list) else ""
                self.error(
                    ("inputs", name),
                    f"input {_clip(name)}: expected string, got {expr.type_name(value)}{hint}",
                )
                continue
            one = playbook.model_copy(update={"inputs": {name: spec}})
            params = {name: param_text(given[name])} if name in given else {}
            try:
                resolve_inputs(one, context or {}, params)
            except PlanError as exc:
                message = exc.message.replace(f"give --param {name}=...", f"give inputs.{name}")
                if name in given:
                    self.error(("inputs", name), message)
                elif "is required" in message:
                    where = "inputs" if "inputs" in self.raw else "playbook"
                    self.error((where,), message, key=True)
                else:  # the alert's value does not fit the input
                    self.error(("alert",), f"{message} (from the alert's {spec.from_})", key=True)

    # -- expectations ---------------------------------------------------------------

    def expectations(self, playbook: Playbook | None) -> None:
        raw = self.raw.get("expect")
        if not isinstance(raw, dict):
            return
        steps = {s.id: s for s in playbook.steps} if playbook is not None else None
        valid = {k: v for k, v in raw.items() if _valid(Expect, {k: v}) is not None}
        for name in ("calls_include", "calls_exclude"):
            for index, call in enumerate(valid.get(name) or []):
                if not CALL_PATTERN.fullmatch(call):
                    self.error(
                        ("expect", name, index),
                        f"{_clip(call)} is not an API call: write service:Operation "
                        "as the plan shows it, such as iam:UpdateAccessKey or "
                        "slack:chat.postMessage",
                    )
        entries: list[tuple[tuple[int, int], str, int, str]] = []
        for name in EXPECT_STEP_LISTS:
            for index, step_id in enumerate(valid.get(name) or []):
                at = self.source.at(("expect", name, index))
                entries.append(((at.line, at.col), name, index, step_id))
        seen: dict[str, list[str]] = {}
        for _, name, index, step_id in sorted(entries):
            loc: Path = ("expect", name, index)
            if steps is not None and not self.known_step(step_id, steps, loc):
                continue
            earlier = seen.setdefault(step_id, [])
            clash = next((e for e in earlier if frozenset((e, name)) in _CONTRADICTIONS), None)
            if name in earlier:
                self.error(loc, f"step '{step_id}' is listed twice in {name}")
            elif clash is not None:
                self.error(loc, f"step '{step_id}' cannot be in both {clash} and {name}")
            elif name == "steps_rejected" and steps is not None and not _gated(steps[step_id]):
                gated = [s.id for s in steps.values() if _gated(s)]
                self.error(
                    loc,
                    f"step '{step_id}' has no approval gate, so it cannot be rejected"
                    f"{_gates(gated)}",
                )
            earlier.append(name)


# --- helpers ---------------------------------------------------------------------


def _valid(model: type[M], data: Any) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _entries(raw: Any, model: type[M]) -> Iterator[tuple[int, M]]:
    """The valid entries of a list (the structure check reports the others)."""
    if not isinstance(raw, list):
        return
    for index, item in enumerate(raw[:_MAX_ENTRIES]):  # past it, the structure check speaks
        entry = _valid(model, item)
        if entry is not None:
            yield index, entry


def _gated(step: Step) -> bool:
    return step.needs_approval or step.action == "core.approval"


def _gates(gated: list[str]) -> str:
    return f" (gated steps: {', '.join(gated)})" if gated else " (no step of it has one)"


def _in_namespace(action: str, namespace: str) -> bool:
    """Whether an outage of `namespace` hits `action` (as the drill controller decides)."""
    return action == namespace or action.startswith(namespace + ".")


def _namespaces(steps: Any) -> list[str]:
    """Every namespace the steps' actions live in: aws, aws.iam, slack, ..."""
    out: set[str] = set()
    for step in steps:
        parts = step.action.split(".")
        out.update(".".join(parts[:n]) for n in range(1, len(parts)))
    return sorted(out)


_NOT_ONE_OF = re.compile(r"^(.*) is not one of (.*)$")


def _merge_literals(diags: list[Diagnostic]) -> list[Diagnostic]:
    """One line for a value outside a union of literals (Literal['Active', 'Inactive'] |
    Literal['Deleted']), where pydantic gives one error per member."""
    out: list[Diagnostic] = []
    merged: dict[tuple[Location, str], int] = {}
    for diag in diags:
        match = _NOT_ONE_OF.match(diag.message)
        if match is None:
            out.append(diag)
            continue
        key = (diag.location, match[1])
        if key not in merged:
            merged[key] = len(out)
            out.append(diag)
            continue
        first = _NOT_ONE_OF.match(out[merged[key]].message)
        assert first is not None
        choices = [*re.split(r", | or ", first[2]), *re.split(r", | or ", match[2])]
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        out[merged[key]] = diag._replace(message=f"{match[1]} is not one of {listed}")
    return out


_SEGMENT = re.compile(r"\.([A-Za-z_@$][A-Za-z0-9_]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(.)")


def json_path(text: str) -> tuple[str | int, ...]:
    """A normalizer's JSON path ($.detail.id, $['detail-type'], $.findings[0]) as a
    location path; as much of it as parses (the location falls back to the ancestor)."""
    parts: list[str | int] = []
    if not text.startswith("$"):
        return ()
    pos = 1
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if match is None:
            break
        name, index, quoted = match.groups()
        if name is not None:
            parts.append(name)
        elif index is not None:
            parts.append(int(index))
        else:
            parts.append(_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else str(m[2]), quoted))
        pos = match.end()
    return tuple(parts)


def repository_playbooks(folder: str) -> str | None:
    """The `playbooks` folder of the repository `folder` is in: the first one found
    walking up from `folder`, stopping at the repository's root (the folder with .git)."""
    current = os.path.abspath(folder or ".")
    for _ in range(_MAX_WALK_UP):
        candidate = os.path.join(current, "playbooks")
        if os.path.isdir(candidate):
            if os.path.isabs(folder):
                return candidate
            relative = os.path.relpath(candidate)
            return relative if not relative.startswith("..") else candidate
        parent = os.path.dirname(current)
        if parent == current or os.path.exists(os.path.join(current, ".git")):
            return None
        current = parent
    return None


def _playbook_ids(folders: list[str], *, cheap: str = "") -> Iterator[tuple[str, str]]:
    """(id, path) of the valid playbooks in folders (cached by content, see checked.py).
    With `cheap`, only files whose text holds it are read as playbooks."""
    count = 0
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        try:
            for path in playbook_files([folder]):
                count += 1
                if count > min(MAX_FILES, _MAX_SUGGEST_FILES) and not cheap:
                    return
                if cheap:
                    try:
                        with open(path, "rb") as handle:
                            if cheap.encode() not in handle.read(2 * 1024 * 1024):
                                continue
                    except OSError:
                        continue
                pid = check_file(path).playbook_id
                if pid is not None:
                    yield pid, path
        except IrbookError:
            return


def _clip(value: Any, limit: int = 60) -> str:
    """A value from the file, quoted, on one line, not too long."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text) if isinstance(value, str) else text


def _sorted(diags: list[Diagnostic], path: str) -> list[Diagnostic]:
    seen: set[tuple[Location, str]] = set()
    out: list[Diagnostic] = []
    for diag in diags:
        if (diag.location, diag.message) not in seen:
            seen.add((diag.location, diag.message))
            out.append(diag)
    out.sort(
        key=lambda d: (d.location.path != path, d.location.path, d.location.line, d.location.col)
    )
    return out
