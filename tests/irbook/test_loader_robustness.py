"""Hostile and odd input never crashes the loader: every failure is a one-line error.

Playbooks are written by people and sometimes come from elsewhere, so YAML bombs,
huge, binary, non-UTF-8 and deeply nested files must each give a `path:line:col`
error quickly; random documents and random edits of a valid playbook must either load
or fail with irbook's own errors, never with another exception.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irbook import source
from irbook.errors import Diagnostic, IrbookError, LoadFailed
from irbook.files import MAX_FILE_BYTES
from irbook.loader import load_playbook
from irbook.validate import validate

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
apiVersion: irbook/v1
kind: Playbook
metadata: {id: example, title: Example, severity: high, atlas: [AML.T0012]}
inputs:
  key: {type: string, required: true, pattern: '^AKIA', from: alert.actor.access_key_id}
  endpoint_name: {type: string, default: ""}
triggers:
  - source: guardduty
    match: {type: "Unauthorized*", severity: {gte: 7}}
steps:
  - id: a
    action: core.note
    with: {text: "key ${{ inputs.key }}"}
  - id: b
    action: core.approval
    needs: [a]
    with: {prompt: "ok? ${{ steps.a.outputs.text }}"}
  - id: c
    action: core.note
    if: "${{ inputs.endpoint_name != '' }}"
    for_each: "${{ alert.resources }}"
    with: {text: "${{ item.arn }}"}
outputs:
  t: "${{ steps.a.outputs.text }}"
"""


def _write(path: Path, content: str | bytes) -> str:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def _failure(path: str) -> list[Diagnostic]:
    """The diagnostics of a file that must not load; each must be one line."""
    with pytest.raises(LoadFailed) as info:
        load_playbook(path)
    diags = info.value.diagnostics
    assert diags
    for diag in diags:
        assert diag.severity == "error"
        assert diag.location.path == path
        assert "\n" not in str(diag)
    return diags


def test_the_valid_playbook_loads(tmp_path: Path) -> None:
    loaded = load_playbook(_write(tmp_path / "ok.yaml", VALID))
    assert [s.id for s in loaded.playbook.steps] == ["a", "b", "c"]


# --- hostile files ---------------------------------------------------------------------


def test_billion_laughs_is_one_fast_error(tmp_path: Path) -> None:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        refs = ", ".join([f"*lol{i - 1}"] * 10)
        lines.append(f"lol{i}: &lol{i} [{refs}]")  # 10**10 values once expanded
    path = _write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    start = time.perf_counter()
    diags = _failure(path)
    assert time.perf_counter() - start < 5.0
    assert len(diags) == 1
    assert "YAML bomb" in diags[0].message
    assert diags[0].location.line >= 1


def test_a_bomb_inside_a_playbook_is_caught_too(tmp_path: Path) -> None:
    bomb = "\n".join(
        f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 12) + "]" for i in range(8)
    )
    text = VALID.replace("outputs:\n", f"x-bomb:\n{bomb}\noutputs:\n")
    diags = _failure(_write(tmp_path / "bomb.yaml", text))
    assert len(diags) == 1
    assert "more than" in diags[0].message


def test_a_50_mb_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: 50 MB on paper, nothing on disk
        handle.truncate(50 * 1024 * 1024)
    opened: list[Any] = []

    def spy_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0] if args else kwargs.get("file"))
        return open(*args, **kwargs)

    monkeypatch.setattr(source, "open", spy_open, raising=False)
    start = time.perf_counter()
    diags = _failure(str(big))
    assert time.perf_counter() - start < 1.0
    assert str(big) not in [str(p) for p in opened]
    assert len(diags) == 1
    limit = f"{MAX_FILE_BYTES // 1024 // 1024} MiB limit"
    assert limit in diags[0].message
    assert "50.0 MiB" in diags[0].message


def test_a_binary_file_is_refused(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06"
    diags = _failure(_write(tmp_path / "logo.yaml", png))
    assert len(diags) == 1
    assert "binary file" in diags[0].message


def _validate(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", "--no-cache", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_UNPRINTABLE = "unprintable character U+{code:04X}; remove it, or write it as {esc} in a " + (
    "double-quoted string"
)


@pytest.mark.parametrize(
    ("char", "where"),
    [
        ("\x07", "plain"),
        ("\x1b", "quoted"),
        ("\x7f", "comment"),
        ("\x9f", "key"),
        ("\x01", "plain"),
        ("\ufffe", "quoted"),
        ("\x00", "beyond the binary sniff"),
    ],
)
def test_a_control_character_gives_line_and_column(tmp_path: Path, char: str, where: str) -> None:
    """Each is one `path:line:col: error:` line naming the character, as YAML errors are."""
    lines = VALID.splitlines(keepends=True)
    if where == "plain":
        lines[2] = lines[2].replace("title: Example", f"title: Exa{char}mple")
    elif where == "quoted":
        lines[12] = lines[12].replace('"key ${{', f'"key{char} ${{{{')
    elif where == "comment":
        lines[9] = lines[9].rstrip("\n") + f"  # a comment{char}\n"
    elif where == "key":
        lines[13] = lines[13].replace("- id: b", f"- i{char}d: b")
    else:  # a NUL late in a file is not taken for a binary file; YAML refuses it
        lines[2] = lines[2].replace("title: Example", f"title: Exa{char}mple")
        lines.insert(0, "# " + "x" * 9000 + "\n")
    text = "".join(lines)
    assert text.count(char) == 1
    index = text.index(char)
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    path = _write(tmp_path / "control.yaml", text)
    done = _validate(path)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    code = ord(char)
    esc = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    assert done.stdout == (
        f"{path}:{line}:{col}: error: invalid YAML: {_UNPRINTABLE.format(code=code, esc=esc)}\n"
    )


def test_a_nul_byte_gives_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "nul.yaml", VALID.replace("title: Example", "title: Exa\x00mple"))
    done = _validate(path)
    assert done.returncode == 1
    assert done.stdout == (
        f"{path}:3:35: error: binary file (contains NUL bytes), expected YAML text\n"
    )


def test_a_latin_1_file_gives_line_and_column(tmp_path: Path) -> None:
    text = (
        "apiVersion: irbook/v1\nkind: Playbook\n"
        "metadata: {id: example, title: Caf\xe9}\n"
        "steps: [{id: a, action: core.note, with: {text: hi}}]\n"
    )
    diags = _failure(_write(tmp_path / "latin1.yaml", text.encode("latin-1")))
    assert len(diags) == 1
    assert (diags[0].location.line, diags[0].location.col) == (3, 35)
    assert "UTF-8" in diags[0].message
    assert "0xe9" in diags[0].message


def test_tabs_give_line_and_column(tmp_path: Path) -> None:
    text = VALID.replace("    action: core.approval", "\taction: core.approval")
    diags = _failure(_write(tmp_path / "tabs.yaml", text))
    assert len(diags) == 1
    assert (diags[0].location.line, diags[0].location.col) == (15, 1)
    assert "tab character" in diags[0].message


def test_a_thousand_valid_playbooks(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(10):
        sub = folder / f"team-{i}"
        sub.mkdir(parents=True)
        for j in range(100):
            text = VALID.replace("id: example,", f"id: example-{i}-{j},")
            (sub / f"playbook-{j:03d}.yaml").write_text(text, encoding="utf-8")
    result = validate([str(folder)])
    assert result.errors == []
    assert len(result.playbooks()) == 1000


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,
        "[" * 10_000,
        "steps: " + "{a: " * 10_000 + "}" * 10_000,
        "x: " + "[" * 70 + "]" * 70,  # deeper than the loader's limit, within libyaml's
        "".join(" " * i + "- \n" for i in range(0, 2000, 2)),
    ],
    ids=["flow-10000", "unclosed-10000", "mappings-10000", "flow-70", "block-1000"],
)
def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    diags = _failure(_write(tmp_path / "deep.yaml", text))
    assert len(diags) == 1
    assert "nesting" in diags[0].message
    assert diags[0].location.line >= 1


def test_a_huge_single_line(tmp_path: Path) -> None:
    text = VALID.replace('{text: "key ${{ inputs.key }}"}', "{text: " + "k" * 900_000 + "}")
    start = time.perf_counter()
    diags = _failure(_write(tmp_path / "long.yaml", text))
    assert time.perf_counter() - start < 5.0
    assert [(d.location.line, d.location.col) for d in diags] == [(13, 18)]
    assert "10000 characters" in diags[0].message


def test_a_huge_line_of_garbage(tmp_path: Path) -> None:
    diags = _failure(_write(tmp_path / "garbage.yaml", "key: [" + "{]" * 400_000 + "\n"))
    assert len(diags) == 1
    assert diags[0].location.line == 1


@pytest.mark.parametrize(
    "content",
    [
        b"apiVersion: irbook/v1\nkind: Playbook\nmetadata: {id: x\n",
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"- [" * 50_000,
    ],
    ids=["syntax", "binary", "deep"],
)
def test_the_cli_never_shows_a_traceback(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "bad.yaml", content)
    done = subprocess.run(
        [sys.executable, "-m", "irbook.cli.main", "validate", "--no-cache", path],
        cwd=ROOT,
        env={**os.environ, "IRBOOK_DEBUG": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "internal error" not in done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:") and ": error: " in lines[0]


# --- once crashes: odd keys, bad tagged scalars, forged lines, unknown tags ---------

# Keys that look like pydantic's own location tags ('[key]', union members such as
# 'str') once lost their location and crashed the message builder.
_CRASHING_KEYS = ["[x]", "a[", "str", "bool", "list[any]", "function-after"]


@pytest.mark.parametrize("key", _CRASHING_KEYS)
def test_odd_top_level_key_is_an_error_not_a_crash(tmp_path: Path, key: str) -> None:
    text = VALID.replace("outputs:\n", f"{yaml.safe_dump({key: 1}).strip()}\noutputs:\n")
    diags = _failure(_write(tmp_path / "odd-key.yaml", text))
    assert len(diags) == 1
    assert diags[0].message.startswith(f"unknown field '{key}'")
    assert (diags[0].location.line, diags[0].location.col) == (23, 1)


@pytest.mark.parametrize("value", ["!!timestamp soon", "!!timestamp ''", "!!int ''", "!!int +"])
def test_explicit_tag_on_a_bad_scalar_is_an_error_not_a_crash(tmp_path: Path, value: str) -> None:
    text = VALID.replace("title: Example", f"title: {value}")
    diags = _failure(_write(tmp_path / "tagged.yaml", text))
    assert [(d.location.line, d.location.col) for d in diags] == [(3, 32)]
    assert "invalid value" in diags[0].message


def test_a_key_cannot_forge_an_output_line(tmp_path: Path) -> None:
    forged = "x\nplaybooks/other.yaml:1:1: error: forged"
    text = VALID.replace("outputs:\n", f"{json.dumps(forged)}: 1\noutputs:\n")
    diags = _failure(_write(tmp_path / "forge.yaml", text))
    assert len(diags) == 1
    assert "\n" not in str(diags[0])


def test_an_unknown_tag_is_a_one_line_error(tmp_path: Path) -> None:
    text = VALID.replace("title: Example", "title: !custom Example")
    diags = _failure(_write(tmp_path / "tag.yaml", text))
    assert [(d.location.line, d.location.col) for d in diags] == [(3, 32)]
    assert "\n" not in str(diags[0])


# --- property-based --------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "${{",
        "}}",
        "${{ inputs.key }}",
        "${{ steps.a.outputs.text }}",
        "{{",
        "&",
        "&a",
        "*a",
        "*",
        "\t",
        "\n",
        ": ",
        "- ",
        "#",
        "'",
        '"',
        "<<",
        "---",
        "é",
        "🔥",
        "\u202e",
        "%YAML 1.1",
        "!!python/object ",
        "!!timestamp ",
        "!!int ",
        "!!binary ",
        "!x ",
        "? ",
        "|",
        ">-",
    ]
)
_TEXT = st.lists(_PIECES | st.text(max_size=8), max_size=6).map("".join)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_DOCS = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)
_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _load_or_reject(content: str | bytes) -> None:
    """Load a file; the only acceptable failures are irbook's own errors."""
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder) / "random.yaml", content)
        try:
            load_playbook(path)
        except LoadFailed as exc:
            assert exc.diagnostics
            for diag in exc.diagnostics:
                assert diag.location.path == path
                assert "\n" not in str(diag)  # one line per finding, whatever the input
        except IrbookError:
            pass


@_SETTINGS
@given(_DOCS)
def test_random_documents_load_or_fail_cleanly(doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    _load_or_reject(text)


@_SETTINGS
@given(st.lists(_PIECES | st.text(max_size=20), max_size=30).map("".join))
def test_random_text_loads_or_fails_cleanly(text: str) -> None:
    _load_or_reject(text)


@_SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_load_or_fail_cleanly(data: bytes) -> None:
    _load_or_reject(data)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_paths(value, (*prefix, i)))
    return out


_BASE = yaml.safe_load(VALID)
_BASE_PATHS = _paths(_BASE)


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


_STRING_PATHS = [p for p in _BASE_PATHS if isinstance(_get(_BASE, p), str)]
_MUTATION = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(_BASE_PATHS), st.none()),
    st.tuples(st.just("replace"), st.sampled_from(_BASE_PATHS), _DOCS),
    st.tuples(
        st.just("insert"), st.sampled_from(_STRING_PATHS), st.tuples(st.integers(0, 60), _TEXT)
    ),
    st.tuples(st.just("rename"), st.sampled_from(_BASE_PATHS), _TEXT),
)


def _mutate(doc: Any, mutation: tuple[str, tuple[Any, ...], Any]) -> None:
    kind, path, arg = mutation
    try:
        parent = _get(doc, path[:-1])
        key = path[-1]
        current = parent[key]
    except (KeyError, IndexError, TypeError):
        return  # an earlier mutation removed or reshaped this part
    if kind == "drop":
        del parent[key]
    elif kind == "replace":
        parent[key] = arg
    elif kind == "insert" and isinstance(current, str):
        at, text = arg
        at = min(at, len(current))
        if "${{" in current and "}}" in current:  # aim inside the expression
            at = min(max(at, current.index("${{") + 3), current.rindex("}}"))
        parent[key] = current[:at] + text + current[at:]
    elif kind == "rename" and isinstance(parent, dict):
        parent[arg] = parent.pop(key)


@_SETTINGS
@given(st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutations_of_a_valid_playbook_never_crash(
    mutations: list[tuple[str, tuple[Any, ...], Any]],
) -> None:
    doc = copy.deepcopy(_BASE)
    for mutation in mutations:
        _mutate(doc, mutation)
    _load_or_reject(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


@_SETTINGS
@given(st.integers(0, len(VALID)), st.integers(0, 20), _TEXT)
def test_text_edits_of_a_valid_playbook_never_crash(at: int, cut: int, text: str) -> None:
    _load_or_reject(VALID[:at] + text + VALID[at + cut :])
