"""`irbook docs [PLAYBOOK] [--out DIR] [--readme PATH] [--check]`: write or check the
Markdown runbooks, the ATLAS coverage page and the README's playbook catalogue."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from irbook.checked import resolve_playbook
from irbook.docs.catalogue import README, has_markers, render_catalogue, with_catalogue
from irbook.docs.coverage import COVERAGE_NAME, render_coverage
from irbook.docs.runbook import render_runbook, runbook_name
from irbook.errors import IrbookError
from irbook.files import default_playbook_dirs
from irbook.loader import Loaded
from irbook.validate import validate


def _playbooks(ref: str | None) -> list[Loaded]:
    if ref:
        return [resolve_playbook(ref)]
    folders = default_playbook_dirs()
    result = validate(folders)
    if result.errors:
        for diag in result.errors:
            print(diag, file=sys.stderr)
        raise IrbookError(
            f"{len(result.errors)} error(s) in the playbooks: fix them (irbook validate) first"
        )
    loaded = result.playbooks()
    if not loaded:
        raise IrbookError(f"no playbook files in {', '.join(folders)}")
    return sorted(loaded, key=lambda item: item.playbook.metadata.id)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IrbookError(f"{path}: cannot read: {exc}") from None


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise IrbookError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _drills(folder: str) -> dict[str, list[tuple[str, str]]]:
    """Playbook id -> (path, title) of the drill scenarios in `folder`, by a light read
    (a scenario that does not parse is `irbook drill`'s to report, not the runbook's)."""
    import yaml

    found: dict[str, list[tuple[str, str]]] = {}
    if not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle.read(1_000_000))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not isinstance(data, dict) or data.get("kind") != "Drill":
            continue
        book, meta = data.get("playbook"), data.get("metadata")
        if not isinstance(book, str) or not isinstance(meta, dict):
            continue
        book = os.path.splitext(os.path.basename(book))[0]  # an id, or a path to one
        title = str(meta.get("title") or meta.get("id") or name)
        found.setdefault(book, []).append((path.replace(os.sep, "/"), title))
    return found


def _catalogue(items: list[Loaded], out_dir: str, asked: str | None) -> tuple[str, str] | None:
    """(README path, its text with the playbook catalogue current), or None.

    `--readme PATH` names the README, which must have the catalogue's markers. Without
    it, ./README.md is taken when it has them and the runbooks are written inside its
    folder (its links reach them): `irbook docs --out /tmp/x` leaves the README alone."""
    path = asked or README
    current = _read(path)
    if current is None:
        if asked is None:
            return None
        raise IrbookError(f"--readme {path}: no such file")
    links = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(path))).replace(os.sep, "/")
    if asked is None and (not has_markers(current) or links.startswith("..")):
        return None
    return path, with_catalogue(current, render_catalogue(items, runbooks=links), path)


def cmd_docs(args: argparse.Namespace) -> int:
    out_dir: str = args.out
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise IrbookError(f"--out {out_dir}: not a folder")
    items = _playbooks(args.playbook)
    drills = _drills(os.path.join(out_dir, "drills"))
    rendered = [
        (
            os.path.join(out_dir, runbook_name(item.playbook)),
            render_runbook(item, drills=drills.get(item.playbook.metadata.id, [])),
        )
        for item in items
    ]
    if not args.playbook:  # the coverage page needs every playbook, not one
        rendered.append((os.path.join(out_dir, COVERAGE_NAME), render_coverage(items)))
        readme = _catalogue(items, out_dir, args.readme)
        if readme is not None:
            rendered.append(readme)
    if args.check:
        stale: list[str] = []
        for path, text in rendered:
            current = _read(path)
            if current != text:
                stale.append(path)
                print(f"{path}: {'missing' if current is None else 'out of date'}")
        if stale:
            again = "irbook docs" + (f" {args.playbook}" if args.playbook else "")
            again += f" --out {out_dir}" if out_dir != "runbooks" else ""
            again += f" --readme {args.readme}" if args.readme else ""
            print(
                f"irbook: {len(stale)} generated file(s) missing or out of date: run `{again}`",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {len(rendered)} generated file(s) up to date", file=sys.stderr)
        return 0
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise IrbookError(f"--out {out_dir}: cannot create: {exc.strerror or exc}") from None
    for path, text in rendered:
        if _read(path) == text:
            print(f"{path}: up to date")
            continue
        _write(path, text)
        print(f"{path}: written")
    return 0
