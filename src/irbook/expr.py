"""The safe expression language of playbooks: `${{ ... }}`.

A closed grammar parsed into a small tree and walked by an interpreter: property and
index access on plain data, comparisons, and/or/not, literals, and ten functions. No
Python object is reachable (no attributes of real objects, no calls but the listed
functions), so there is nothing to escape from; jinja2's sandbox was measured here at
38 ms to import plus 0.3 ms to compile each expression, which would break the start-up
budget of `irbook validate`.

Values that come from alerts are data: a template is parsed once from the playbook's
own text, and what it yields is never parsed again, so an alert field holding
`${{ ... }}` stays literal text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

MAX_EXPR_CHARS = 4096
MAX_DEPTH = 32
ROOTS = ("inputs", "alert", "steps", "run", "item")

OPEN = "${{"
CLOSE = "}}"

# The status functions, GitHub Actions' style: in a step's `if` only, where the engine
# puts the status of the step's upstream in the context under STATUS (a key no
# expression can name): "success" or "failure".
STATUS_FUNCTIONS = ("success", "failure", "always")
STATUS = "status()"


class ExprError(Exception):
    """A syntax or evaluation error; `offset` is the character index in the source."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# --- tokens -----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!.,()\[\]])
    """,
    re.VERBOSE,
)

_HINTS = {
    "=": " (compare with ==)",
    "+": " (there is no arithmetic; use join() or text around ${{ }})",
    "-": " (there is no arithmetic)",
    "*": " (there is no arithmetic)",
    "|": " (use or)",
    "&": " (use and)",
    "?": " (use and/or)",
}

_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null", "True", "False", "None"}


class Token(NamedTuple):
    kind: str  # num | str | name | op | end
    text: str
    offset: int


def _tokenize(src: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(src):
        match = _TOKEN.match(src, pos)
        if match is None:
            hint = _HINTS.get(src[pos], "")
            raise ExprError(f"unexpected character {src[pos]!r}{hint}", pos)
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(src)))
    return tokens


def _unquote(text: str, offset: int) -> str:
    quote, body = text[0], text[1:-1]
    if quote == "'":
        body = body.replace("''", "'")
    out: list[str] = []
    i = 0
    escapes = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"', "r": "\r"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt not in escapes:
                raise ExprError(f"unknown escape \\{nxt} in string", offset + i + 1)
            out.append(escapes[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# --- tree ---------------------------------------------------------------------------


TOO_DEEP = (
    f"expression nested too deeply (more than {MAX_DEPTH} levels; "
    "each and/or operand and each .name or [index] counts as one)"
)


class Node:
    """An expression tree node. Plain slotted classes: dataclasses cost import time.

    `height` is the tree's height, checked as each node is built: no tree taller than
    MAX_DEPTH exists, so every walker over one (the interpreter, the validator's reference
    finder, code outside this module) stays far from Python's recursion limit, whatever
    shape a 4 KB expression has. A left-leaning chain (`a or b or ...`, `x.a.b...`,
    `x[0][0]...`) grows one level per operand and the parser builds it in a loop, so the
    parser's own nesting count alone would not bound it.
    """

    __slots__ = ("height", "offset")

    def __init__(self, offset: int, *children: Node) -> None:
        self.offset = offset
        self.height: int = 1 + max((child.height for child in children), default=0)
        if self.height > MAX_DEPTH:
            raise ExprError(TOO_DEEP, offset)


class Literal(Node):
    __slots__ = ("value",)

    def __init__(self, offset: int, value: Any) -> None:
        super().__init__(offset)
        self.value = value


class Name(Node):
    __slots__ = ("name",)

    def __init__(self, offset: int, name: str) -> None:
        super().__init__(offset)
        self.name = name


class Attr(Node):
    __slots__ = ("name", "target")

    def __init__(self, offset: int, target: Node, name: str) -> None:
        super().__init__(offset, target)
        self.target = target
        self.name = name


class Index(Node):
    __slots__ = ("index", "target")

    def __init__(self, offset: int, target: Node, index: Node) -> None:
        super().__init__(offset, target, index)
        self.target = target
        self.index = index


class ListNode(Node):
    __slots__ = ("items",)

    def __init__(self, offset: int, items: tuple[Node, ...]) -> None:
        super().__init__(offset, *items)
        self.items = items


class Call(Node):
    __slots__ = ("args", "func")

    def __init__(self, offset: int, func: str, args: tuple[Node, ...]) -> None:
        super().__init__(offset, *args)
        self.func = func
        self.args = args


class Unary(Node):
    __slots__ = ("op", "operand")

    def __init__(self, offset: int, op: str, operand: Node) -> None:
        super().__init__(offset, operand)
        self.op = op
        self.operand = operand


class Binary(Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, offset: int, op: str, left: Node, right: Node) -> None:
        super().__init__(offset, left, right)
        self.op = op
        self.left = left
        self.right = right


class _Parser:
    def __init__(self, src: str) -> None:
        self.tokens = _tokenize(src)
        self.pos = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind in ("op", "name") and tok.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        tok = self.peek()
        if tok.text != text or tok.kind not in ("op", "name"):
            found = f"{tok.text!r}" if tok.kind != "end" else "end of expression"
            raise ExprError(f"expected {text!r}, found {found}", tok.offset)
        return self.take()

    def parse(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.text!r}", tok.offset)
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(TOO_DEEP, self.peek().offset)
        try:
            return self.or_()
        finally:
            self.depth -= 1

    def or_(self) -> Node:
        node = self.and_()
        while True:
            tok = self.peek()
            if self.accept("or") or self.accept("||"):
                node = Binary(tok.offset, "or", node, self.and_())
            else:
                return node

    def and_(self) -> Node:
        node = self.not_()
        while True:
            tok = self.peek()
            if self.accept("and") or self.accept("&&"):
                node = Binary(tok.offset, "and", node, self.not_())
            else:
                return node

    def not_(self) -> Node:
        tok = self.peek()
        if self.accept("not") or self.accept("!"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExprError(TOO_DEEP, tok.offset)
            try:
                return Unary(tok.offset, "not", self.not_())
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Node:
        node = self.postfix()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            return Binary(tok.offset, tok.text, node, self.postfix())
        if self.accept("in"):
            return Binary(tok.offset, "in", node, self.postfix())
        if tok.kind == "name" and tok.text == "not" and self.tokens[self.pos + 1].text == "in":
            self.pos += 2
            return Binary(tok.offset, "not in", node, self.postfix())
        return node

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            tok = self.peek()
            if self.accept("."):
                name = self.take()
                if name.kind != "name":
                    raise ExprError("expected a property name after '.'", name.offset)
                if name.text.startswith("_"):
                    raise ExprError(
                        f"property names cannot start with '_' ({name.text!r})", name.offset
                    )
                node = Attr(tok.offset, node, name.text)
            elif self.accept("["):
                index = self.expr()
                self.expect("]")
                node = Index(tok.offset, node, index)
            else:
                return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            value: Any = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return Literal(tok.offset, value)
        if tok.kind == "str":
            return Literal(tok.offset, _unquote(tok.text, tok.offset))
        if tok.kind == "name":
            if tok.text in ("true", "True"):
                return Literal(tok.offset, True)
            if tok.text in ("false", "False"):
                return Literal(tok.offset, False)
            if tok.text in ("null", "None"):
                return Literal(tok.offset, None)
            if tok.text in _KEYWORDS:
                raise ExprError(f"unexpected {tok.text!r}", tok.offset)
            if self.accept("("):
                if tok.text not in FUNCTIONS:
                    known = ", ".join(sorted(FUNCTIONS))
                    raise ExprError(f"unknown function {tok.text!r} (known: {known})", tok.offset)
                args: list[Node] = []
                if not self.accept(")"):
                    args.append(self.expr())
                    while self.accept(","):
                        args.append(self.expr())
                    self.expect(")")
                low, high = FUNCTIONS[tok.text][1]
                if not low <= len(args) <= high:
                    want = str(low) if low == high else f"{low} to {high}"
                    noun = "argument" if want == "1" else "arguments"
                    raise ExprError(
                        f"{tok.text}() takes {want} {noun}, got {len(args)}", tok.offset
                    )
                return Call(tok.offset, tok.text, tuple(args))
            return Name(tok.offset, tok.text)
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind == "op" and tok.text == "[":
            items: list[Node] = []
            if not self.accept("]"):
                items.append(self.expr())
                while self.accept(","):
                    items.append(self.expr())
                self.expect("]")
            return ListNode(tok.offset, tuple(items))
        if tok.kind == "end":
            raise ExprError("expression ends too early", tok.offset)
        raise ExprError(f"unexpected {tok.text!r}", tok.offset)


@lru_cache(maxsize=4096)
def parse(src: str) -> Node:
    """Parse one expression (the text between `${{` and `}}`)."""
    if len(src) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    if not src.strip():
        raise ExprError("empty expression")
    return _Parser(src).parse()


# --- templates --------------------------------------------------------------------


class Template:
    """A string from a playbook: literal text and expressions, in order."""

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[str | tuple[Node, int], ...]) -> None:
        self.parts = parts  # text, or (expression, offset of its text)

    @property
    def whole(self) -> Node | None:
        """The expression when the string is exactly one `${{ ... }}`: yields a native value."""
        if len(self.parts) == 1 and isinstance(self.parts[0], tuple):
            return self.parts[0][0]
        return None

    @property
    def expressions(self) -> list[tuple[Node, int]]:
        return [p for p in self.parts if isinstance(p, tuple)]


def is_template(value: object) -> bool:
    return isinstance(value, str) and OPEN in value


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """Split a string into text and expressions; ExprError offsets index into `text`."""
    parts: list[str | tuple[Node, int]] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            if pos < len(text):
                parts.append(text[pos:])
            break
        if start > pos:
            parts.append(text[pos:start])
        body_start = start + len(OPEN)
        end = _find_close(text, body_start)
        if end < 0:
            raise ExprError("'${{' without a closing '}}'", start)
        body = text[body_start:end]
        try:
            node = parse(body)
        except ExprError as exc:
            raise ExprError(exc.message, body_start + exc.offset) from None
        parts.append((node, body_start))  # node offsets count from the body's start
        pos = end + len(CLOSE)
    return Template(tuple(parts))


def _find_close(text: str, pos: int) -> int:
    """The `}}` that closes an expression, skipping string literals that contain one."""
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif text.startswith(CLOSE, i):
            return i
        i += 1
    return -1


# --- references (for the validator) -----------------------------------------------


class Reference(NamedTuple):
    """A path read from the context, such as ('steps', 'snapshot', 'outputs', 'uri')."""

    path: tuple[str, ...]
    offset: int


def references(node: Node, *, fallbacks: bool = True) -> Iterator[Reference]:
    """Every context path an expression reads, as far as it is known statically.

    A work list rather than recursion: the order is the recursive one (left to right,
    a chain's dynamic indexes before its base), the stack use is not. With
    `fallbacks=False` the first argument of `default(...)` is left out: a value the
    author expects may be absent, which the run does not need.
    """
    todo: list[Node | Reference] = [node]  # a Reference is queued to keep its place
    while todo:
        item = todo.pop()
        if isinstance(item, Reference):
            yield item
        elif isinstance(item, Name):
            yield Reference((item.name,), item.offset)
        elif isinstance(item, Attr | Index):
            chain: list[str] = []
            cur: Node = item
            dynamic: list[Node] = []
            while isinstance(cur, Attr | Index):
                if isinstance(cur, Attr):
                    chain.append(cur.name)
                elif isinstance(cur.index, Literal) and isinstance(cur.index.value, str):
                    chain.append(cur.index.value)
                else:
                    chain.clear()  # an index we cannot know: keep only the prefix
                    dynamic.append(cur.index)
                cur = cur.target
            if isinstance(cur, Name):
                todo.append(Reference((cur.name, *reversed(chain)), cur.offset))
            else:
                todo.append(cur)
            todo.extend(reversed(dynamic))
        elif isinstance(item, Unary):
            todo.append(item.operand)
        elif isinstance(item, Binary):
            todo.extend((item.right, item.left))
        elif isinstance(item, Call):
            args = item.args if fallbacks or item.func != "default" else item.args[1:]
            todo.extend(reversed(args))
        elif isinstance(item, ListNode):
            todo.extend(reversed(item.items))


def status_calls(node: Node) -> Iterator[Call]:
    """Every call of a status function (success(), failure(), always()) in an expression."""
    todo: list[Node] = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, Call):
            if item.func in STATUS_FUNCTIONS:
                yield item
            todo.extend(reversed(item.args))
        elif isinstance(item, Attr):
            todo.append(item.target)
        elif isinstance(item, Index):
            todo.extend((item.index, item.target))
        elif isinstance(item, Unary):
            todo.append(item.operand)
        elif isinstance(item, Binary):
            todo.extend((item.right, item.left))
        elif isinstance(item, ListNode):
            todo.extend(reversed(item.items))


def handles_failure(condition: str | bool | None) -> bool:
    """Whether a step's `if` calls failure() or always(): then a failed or rejected
    upstream step does not skip it; its `if` decides."""
    if not isinstance(condition, str) or OPEN not in condition:
        return False
    try:
        template = parse_template(condition)
    except ExprError:
        return False
    return any(
        call.func in ("failure", "always")
        for node, _ in template.expressions
        for call in status_calls(node)
    )


# --- evaluation ---------------------------------------------------------------------


def _length(value: Any) -> int:
    """The number of characters of a string, items of a list or keys of an object; 0 for null."""
    if value is None:
        return 0
    if isinstance(value, str | list | dict):
        return len(value)
    raise ExprError(f"length() needs a string, list or object, got {type_name(value)}")


def _contains(haystack: Any, needle: Any) -> bool:
    """Whether a string holds a substring (ignoring case), a list an equal item, or an
    object a key; false for null. `x in y` is `contains(y, x)`."""
    if haystack is None:
        return False
    if isinstance(haystack, str):
        return isinstance(needle, str) and needle.lower() in haystack.lower()
    if isinstance(haystack, list):
        return any(_equal(item, needle) for item in haystack)
    if isinstance(haystack, dict):  # data keys are text; a list or object is no key
        return isinstance(needle, str) and needle in haystack
    raise ExprError(f"contains() needs a string, list or object, got {type_name(haystack)}")


def _startswith(value: Any, prefix: Any) -> bool:
    """Whether a string starts with the prefix (case matters); false for anything else."""
    return isinstance(value, str) and isinstance(prefix, str) and value.startswith(prefix)


def _endswith(value: Any, suffix: Any) -> bool:
    """Whether a string ends with the suffix (case matters); false for anything else."""
    return isinstance(value, str) and isinstance(suffix, str) and value.endswith(suffix)


def _join(values: Any, sep: Any = ",") -> str:
    """The items of a list as text, separated by `sep` (default `,`); empty for null."""
    if values is None:
        return ""
    if not isinstance(values, list):
        raise ExprError(f"join() needs a list, got {type_name(values)}")
    return str(sep).join(to_text(v) for v in values)


def _default(value: Any, fallback: Any) -> Any:
    """The value, or the fallback when it is null or empty text. Reading
    `steps.X.outputs...` as its first argument also tells the engine a missing output is
    expected: the step runs even when step X failed or was skipped."""
    return fallback if value is None or value == "" else value


_ANY = object()  # where()'s third argument, when not given


def _where(values: Any, field: Any, equals: Any = _ANY) -> list[Any]:
    """The objects of a list whose `field` is set (not null, not empty text, list or
    object), or with `equals` given, whose `field` equals it: for_each over alert
    resources that may lack an ARN, say, runs only on those that have one; over
    `'tags'`, only on the tagged ones (normalizers give every resource a tags object,
    empty when the source names none); `where(alert.resources, 'type', 'AwsEc2Instance')`
    only on the instances."""
    if values is None:
        return []
    if not isinstance(values, list):
        raise ExprError(f"where() needs a list, got {type_name(values)}")
    if not isinstance(field, str):
        raise ExprError(f"where() needs a field name, got {type_name(field)}")
    kept = []
    for item in values:
        if not isinstance(item, dict):
            continue
        found = item.get(field)
        if (found not in (None, "", [], {})) if equals is _ANY else _equal(found, equals):
            kept.append(item)
    return kept


def _add_hours(time: Any, hours: Any) -> str | None:
    """The ISO-8601 time (UTC) some hours after another, such as a notification deadline
    72 hours after `alert.time`; null for null or unreadable time text."""
    import datetime as dt

    if isinstance(hours, bool) or not isinstance(hours, int | float):
        raise ExprError(f"add_hours() needs a number of hours, got {type_name(hours)}")
    if time is None:
        return None
    if not isinstance(time, str):
        raise ExprError(f"add_hours() needs time text, got {type_name(time)}")
    try:
        moment = dt.datetime.fromisoformat(time.replace("Z", "+00:00"))
        later = moment + dt.timedelta(hours=hours)
    except (ValueError, OverflowError):
        return None
    if later.tzinfo is None:
        later = later.replace(tzinfo=dt.UTC)
    return later.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _success() -> bool:
    """In a step's `if` only: true when no step upstream of it (its `needs`, and theirs)
    failed or was rejected. The default: a step whose `if` calls neither `failure()` nor
    `always()` is skipped when a step it needs failed (on_failure: abort) or was rejected."""
    raise ExprError("success() can only be used in a step's if")


def _failure() -> bool:
    """In a step's `if` only: true when a step upstream of it (its `needs`, and theirs)
    failed, or its approval was rejected (or timed out with on_timeout: reject). Such a step
    runs after a failed or rejected upstream step, to page or post that containment did not
    happen."""
    raise ExprError("failure() can only be used in a step's if")


def _always() -> bool:
    """In a step's `if` only: true whatever happened upstream; the step runs after its
    `needs` end, failed, rejected or skipped (not after a cancelled run)."""
    raise ExprError("always() can only be used in a step's if")


FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[int, int]]] = {
    "add_hours": (_add_hours, (2, 2)),
    "contains": (_contains, (2, 2)),
    "startswith": (_startswith, (2, 2)),
    "endswith": (_endswith, (2, 2)),
    "length": (_length, (1, 1)),
    "join": (_join, (1, 2)),
    "default": (_default, (2, 2)),
    "where": (_where, (2, 3)),
    "success": (_success, (0, 0)),
    "failure": (_failure, (0, 0)),
    "always": (_always, (0, 0)),
}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "value"


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _compare(op: str, a: Any, b: Any, offset: int) -> bool:
    numeric = (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    )
    if not numeric and not (isinstance(a, str) and isinstance(b, str)):
        raise ExprError(f"cannot compare {type_name(a)} {op} {type_name(b)}", offset)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def evaluate(node: Node, context: Mapping[str, Any]) -> Any:
    """Evaluate a parsed expression over plain data (dicts, lists, scalars).

    Chains (`a or b or ...`, `x.a[0].b`, `not not x`) are walked in a loop, so the
    recursion follows only the nesting of brackets and calls.
    """
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        if node.name not in context:
            raise ExprError(f"unknown name {node.name!r}", node.offset)
        return context[node.name]
    if isinstance(node, Attr | Index):
        links: list[Attr | Index] = []
        cur: Node = node
        while isinstance(cur, Attr | Index):
            links.append(cur)
            cur = cur.target
        value = evaluate(cur, context)
        for link in reversed(links):
            key = link.name if isinstance(link, Attr) else evaluate(link.index, context)
            value = _get(value, key)
        return value
    if isinstance(node, ListNode):
        return [evaluate(item, context) for item in node.items]
    if isinstance(node, Unary):
        flips = 0
        cur = node
        while isinstance(cur, Unary):
            flips += 1
            cur = cur.operand
        return truthy(evaluate(cur, context)) != (flips % 2 == 1)
    if isinstance(node, Binary):
        if node.op in ("and", "or"):
            return _logic_chain(node, context)
        left = evaluate(node.left, context)
        right = evaluate(node.right, context)
        if node.op == "==":
            return _equal(left, right)
        if node.op == "!=":
            return not _equal(left, right)
        if node.op == "in":
            return _contains(right, left)
        if node.op == "not in":
            return not _contains(right, left)
        return _compare(node.op, left, right, node.offset)
    if isinstance(node, Call):
        if node.func in STATUS_FUNCTIONS:
            status = context.get(STATUS)
            if status is None:
                raise ExprError(f"{node.func}() can only be used in a step's if", node.offset)
            return node.func == "always" or status == node.func
        func = FUNCTIONS[node.func][0]
        args = [evaluate(arg, context) for arg in node.args]
        try:
            return func(*args)
        except ExprError as exc:
            raise ExprError(exc.message, node.offset) from None
    raise ExprError("unsupported expression", node.offset)  # pragma: no cover


def _logic_chain(node: Binary, context: Mapping[str, Any]) -> Any:
    """`a or b and c or ...`: the parser leans these left; fold them from the bottom up.

    Short-circuits as the nested form would: a right operand is evaluated only when
    the value so far does not decide its operator.
    """
    spine: list[Binary] = []
    cur: Node = node
    while isinstance(cur, Binary) and cur.op in ("and", "or"):
        spine.append(cur)
        cur = cur.left
    value = evaluate(cur, context)
    for link in reversed(spine):
        if truthy(value) == (link.op == "and"):
            value = evaluate(link.right, context)
    return value


def _get(target: Any, key: Any) -> Any:
    """Property or index access on data; missing things are null, as in GitHub Actions."""
    if target is None:
        return None
    if isinstance(target, Mapping):
        return target.get(key) if isinstance(key, str) else None
    if isinstance(target, list):
        if isinstance(key, int) and not isinstance(key, bool) and -len(target) <= key < len(target):
            return target[key]
        return None
    return None


def to_text(value: Any) -> str:
    """How a value reads when interpolated into text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, sort_keys=True, default=str)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render a value from a playbook: strings with `${{ }}` are evaluated, once.

    Containers are walked; what evaluation returns is never rendered again.
    """
    if isinstance(value, str):
        if OPEN not in value:
            return value
        template = parse_template(value)
        whole = template.whole
        if whole is not None:
            return evaluate(whole, context)
        out: list[str] = []
        for part in template.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(to_text(evaluate(part[0], context)))
        return "".join(out)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def constant_value(node: Node) -> tuple[bool, Any]:
    """(True, value) when an expression reads no context and evaluates cleanly."""
    if any(True for _ in references(node)):
        return False, None
    try:
        return True, evaluate(node, {})
    except ExprError:
        return False, None
