"""Read a YAML or JSON file into plain data, remembering where every value came from.

Playbooks and alerts are written by people and sometimes by attackers, so reading is
defensive: a size cap before reading, binary and non-UTF-8 files refused, duplicate
keys refused, aliases allowed but their expansion bounded (no YAML bomb), nesting
bounded (no RecursionError), and every problem reported as path:line:col.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from irbook.errors import IrbookError, Location
from irbook.files import MAX_FILE_BYTES, PLAYBOOK_SUFFIXES, default_playbook_dirs, playbook_files

MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 64

try:  # libyaml is ~15x faster; it keeps line/column marks too
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - wheels ship libyaml
    _Loader = yaml.SafeLoader

Path = tuple[str | int, ...]

__all__ = [
    "MAX_FILE_BYTES",
    "PLAYBOOK_SUFFIXES",
    "Source",
    "default_playbook_dirs",
    "load_file",
    "load_text",
    "playbook_files",
]


@dataclass
class Source:
    """Plain data plus the position of every key and value, by path."""

    path: str
    data: Any
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    # Where a scalar's text starts inside the quotes (for expression columns).
    styles: dict[Path, str] = field(default_factory=dict)
    text: str = ""

    def at(self, loc: Path, *, key: bool = False) -> Location:
        """The location of a path, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while True:
            table = self.keys if key and loc in self.keys else self.values
            if loc in table:
                line, col = table[loc]
                return Location(self.path, line, col)
            if loc in self.keys:
                line, col = self.keys[loc]
                return Location(self.path, line, col)
            if not loc:
                return Location(self.path, 1, 1)
            loc = loc[:-1]


def _a(kind: str) -> str:
    return ("an " if kind[:1] in "aeiou" else "a ") + kind


def _read_text(path: str, kind: str) -> str:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise IrbookError("no such file", Location(path)) from None
    except OSError as exc:
        raise IrbookError(f"cannot read: {exc.strerror}", Location(path)) from None
    except ValueError:  # a NUL byte in the path (a reference inside a file, say)
        shown = path.replace("\x00", "\\x00")
        raise IrbookError("not a usable path: it holds a NUL byte", Location(shown)) from None
    if os.path.isdir(path):
        raise IrbookError("is a directory, expected a file", Location(path))
    if size > MAX_FILE_BYTES:
        raise IrbookError(
            f"file is {size / 1024 / 1024:.1f} MiB, over the "
            f"{MAX_FILE_BYTES // 1024 // 1024} MiB limit for {_a(kind)}",
            Location(path),
        )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise IrbookError(f"cannot read: {exc.strerror}", Location(path)) from None
    return decode(raw, path, kind)


def decode(raw: bytes, path: str, kind: str = "playbook") -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise IrbookError(
            f"over the {MAX_FILE_BYTES // 1024 // 1024} MiB limit for {_a(kind)}", Location(path)
        )
    nul = raw.find(b"\x00", 0, 8192)
    if nul >= 0:
        raise IrbookError(
            "binary file (contains NUL bytes), expected YAML text", _byte_location(raw, nul, path)
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IrbookError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
            _byte_location(raw, exc.start, path),
        ) from None
    return text.removeprefix("\ufeff")


def _byte_location(raw: bytes, index: int, path: str) -> Location:
    """Line and column (in characters) of byte `index`, for problems found before decoding."""
    line_start = raw.rfind(b"\n", 0, index) + 1
    col = len(raw[line_start:index].decode("utf-8", errors="replace")) + 1
    return Location(path, raw.count(b"\n", 0, index) + 1, col)


def load_file(path: str, kind: str = "playbook") -> Source:
    """Read and parse a file; `kind` names it in the size limit's message ("alert file")."""
    return load_text(_read_text(path, kind), path)


def load_text(text: str, path: str) -> Source:
    try:  # the pure-Python loader checks for unprintable characters here already
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise _unprintable(exc, text, path) from None
    try:
        root = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise _unprintable(exc, text, path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and "quoted scalar" in exc.context and exc.context_mark is not None:
            mark, problem = exc.context_mark, "unclosed quoted string"
        elif exc.context and exc.context_mark is not None and "flow" in exc.context:
            cm = exc.context_mark
            problem = f"{problem} (in the {{...}} or [...] opened at {cm.line + 1}:{cm.column + 1})"
        elif "found undefined alias" in (exc.problem or "") and exc.problem_mark is not None:
            pm = exc.problem_mark
            name = text.split("\n")[pm.line][pm.column :].split()[0] if text else ""
            problem = f"undefined alias {name!r}"
        if "expected a single document" in str(exc):
            problem = "more than one YAML document; put one playbook per file"
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = "tab character; YAML indentation must use spaces"
        raise IrbookError(f"invalid YAML: {_clean(problem)}", loc) from None
    except yaml.YAMLError as exc:
        raise IrbookError(f"invalid YAML: {_clean(str(exc))}", Location(path)) from None
    except RecursionError:
        raise IrbookError("invalid YAML: nesting too deep", Location(path)) from None
    finally:
        loader.dispose()
    if root is None:
        raise IrbookError("empty file", Location(path, 1, 1))
    source = Source(path=path, data=None, text=text)
    builder = _Builder(source)
    source.data = builder.build(root, (), 0)
    return source


def _unprintable(exc: yaml.reader.ReaderError, text: str, path: str) -> IrbookError:
    """A control character, located: the reader gives only an offset (bytes for libyaml,
    characters for PyYAML), so the first such character in the text is looked up."""
    code = exc.character if isinstance(exc.character, int) else ord(exc.character or "\x00")
    index = text.find(chr(code))
    if index < 0:  # pragma: no cover - the reader reports a character of this text
        return IrbookError(f"invalid YAML: unprintable character U+{code:04X}", Location(path))
    line_start = text.rfind("\n", 0, index) + 1
    escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return IrbookError(
        f"invalid YAML: unprintable character U+{code:04X}; remove it, or write it as "
        f"{escape} in a double-quoted string",
        Location(path, text.count("\n", 0, index) + 1, index - line_start + 1),
    )


def _char_at(text: str, line: int, col: int) -> str:
    lines = text.split("\n", line + 1)
    if line < len(lines) and col < len(lines[line]):
        return lines[line][col]
    return ""


def _clean(problem: str) -> str:
    problem = problem.replace("\t", "\\t")
    if "found character '\\t'" in problem:
        return "tab character; YAML indentation must use spaces"
    return problem


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0

    def fail(self, node: yaml.Node, message: str) -> IrbookError:
        mark = node.start_mark
        return IrbookError(message, Location(self.source.path, mark.line + 1, mark.column + 1))

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(
                node,
                f"document expands to more than {MAX_NODES} values "
                "(alias expansion, a 'YAML bomb'?)",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels")
        mark = node.start_mark
        self.source.values[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self.fail(key_node, "merge keys ('<<') are not supported")
                if not isinstance(key_node, yaml.ScalarNode):
                    raise self.fail(key_node, "mapping keys must be plain strings")
                key = self._scalar(key_node)
                if isinstance(key, bool) or key is None:
                    key = key_node.value  # `on:`/`yes:`/`null:` stay as written
                key = str(key)
                if key in out:
                    first = self.source.keys[(*path, key)]
                    raise self.fail(
                        key_node, f"duplicate key '{key}' (first defined at line {first[0]})"
                    )
                kmark = key_node.start_mark
                self.source.keys[(*path, key)] = (kmark.line + 1, kmark.column + 1)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if node.style in ("'", '"', "|", ">"):
            self.source.styles[path] = node.style
        return self._scalar(node)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        # Fast paths for the tags the resolver gives nearly every scalar in a playbook;
        # the full constructor (slow in Python) handles the rest.
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            lowered = node.value.lower()
            if lowered in _TRUE or lowered in _FALSE:
                return lowered in _TRUE
            raise self.fail(node, f"invalid value for !!bool: {_shown(node.value)}")
        if not tag.startswith("tag:yaml.org,2002:") or tag.rsplit(":", 1)[1] not in _KNOWN:
            raise self.fail(node, f"unsupported YAML tag {_shown(tag)}")
        try:
            value = _SCALARS.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors raise many kinds on bad input
            short = tag.rsplit(":", 1)[1]
            raise self.fail(node, f"invalid value for !!{short}: {_shown(node.value)}") from None
        if not isinstance(value, str | int | float | bool | type(None)):
            # Timestamps and binary become strings: playbooks compare text, not dates.
            return node.value
        return value


def _shown(text: str, limit: int = 40) -> str:
    """Text from the file, quoted on one line (no newline can forge an output line)."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return repr(text)


_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_TRUE = frozenset({"yes", "true", "on", "y"})
_FALSE = frozenset({"no", "false", "off", "n"})
_KNOWN = frozenset({"str", "int", "float", "bool", "null", "timestamp", "binary"})


class _ScalarConstructor(yaml.SafeLoader):
    def __init__(self) -> None:
        yaml.SafeLoader.__init__(self, "")


_SCALARS = _ScalarConstructor()
