"""The expression language: values, errors, and that alert text stays data."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irbook import expr

CTX: dict[str, Any] = {
    "inputs": {"key": "AKIAEXAMPLE", "endpoint": "", "n": 3, "flag": True},
    "alert": {
        "title": "Bad ${{ inputs.key }} {{ 7*7 }} {% raw %}",
        "severity": 8.0,
        "resources": [{"arn": "arn:1", "tags": {"env": "prod"}}, {"arn": "arn:2"}],
        "actor": {"ip": None},
    },
    "steps": {"snap": {"outputs": {"uri": "s3://b/k"}, "status": "succeeded"}},
    "run": {"id": "r1"},
}


def ev(text: str) -> Any:
    return expr.render(text, CTX)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ inputs.key }}", "AKIAEXAMPLE"),
        ("${{ inputs.n }}", 3),  # a whole expression keeps its native type
        ("n=${{ inputs.n }}", "n=3"),  # mixed text interpolates
        ("${{ inputs.flag }}", True),
        ("${{ inputs.endpoint != '' }}", False),
        ("${{ alert.severity >= 7 and inputs.flag }}", True),
        ("${{ not inputs.flag or inputs.n == 3 }}", True),
        ("${{ alert.resources[1].arn }}", "arn:2"),
        ("${{ alert.resources[0]['tags'].env }}", "prod"),
        ("${{ alert.resources[5].arn }}", None),  # missing things are null
        ("${{ alert.actor.ip.whatever }}", None),
        ("${{ length(alert.resources) }}", 2),
        ("${{ contains(alert.title, 'BAD') }}", True),  # case-insensitive for text
        ("${{ 'arn:1' in [alert.resources[0].arn, 'x'] }}", True),
        ("${{ 'z' not in ['a'] }}", True),
        ("${{ 'ip' in alert.actor }}", True),
        ("${{ alert.resources in alert.actor }}", False),  # a list is no key, not a crash
        ("${{ contains(alert.actor, alert.actor) }}", False),
        ("${{ startswith(inputs.key, 'AKIA') }}", True),
        ("${{ endswith(inputs.key, 'AKIA') }}", False),
        ("${{ join(['a', 'b'], '+') }}", "a+b"),
        ("${{ default(inputs.endpoint, 'none') }}", "none"),
        ("${{ default(alert.actor.ip, 'n/a') }}", "n/a"),
        ("${{ steps.snap.outputs.uri }}", "s3://b/k"),
        ("${{ 1.5 }}", 1.5),
        ("${{ null }}", None),
        ("${{ 'it''s' }}", "it's"),
        ("${{ 'a }} b' }}", "a }} b"),  # a closing brace inside a string literal
        ("x ${{ true }} ${{ null }} ${{ ['a'] }}", 'x true  ["a"]'),
        ("no expression", "no expression"),
    ],
)
def test_values(text: str, expected: Any) -> None:
    assert ev(text) == expected


def test_alert_text_is_never_evaluated_again() -> None:
    # The title holds template syntax; it comes out exactly as it went in.
    assert ev("${{ alert.title }}") == CTX["alert"]["title"]
    assert ev("Title: ${{ alert.title }}") == "Title: " + CTX["alert"]["title"]
    # Nested containers are rendered once too.
    rendered = expr.render({"a": ["${{ alert.title }}"]}, CTX)
    assert rendered == {"a": [CTX["alert"]["title"]]}


@pytest.mark.parametrize(
    "attack",
    [
        "${{ ''.__class__ }}",
        "${{ inputs.__class__.__mro__ }}",
        "${{ __import__('os').system('id') }}",
        "${{ eval('1') }}",
        "${{ inputs.key.upper() }}",
        "${{ lambda: 1 }}",
        "${{ [x for x in inputs] }}",
        "${{ inputs; import os }}",
        "${{ 1 + 1 }}",
        "${{ inputs['__class__'] }}",
    ],
)
def test_injection_attempts_fail_or_yield_nothing(attack: str) -> None:
    """Nothing reaches Python objects: either a parse error or plain-data lookups (null)."""
    try:
        value = ev(attack)
    except expr.ExprError:
        return
    assert value is None  # dunder names are just missing dict keys


def test_dunder_attribute_of_real_object_is_null() -> None:
    class Secret:
        token = "s3cr3t"

    assert expr.render("${{ obj.token }}", {"obj": Secret()}) is None


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("${{ inputs.key == }}", "expression ends too early", 18),
        ("${{ foo( }}", "unknown function 'foo'", 4),
        ("${{ length(1, 2) }}", "length() takes 1 argument, got 2", 4),
        ("${{ inputs.key ", "'${{' without a closing '}}'", 0),
        ("${{ }}", "empty expression", 3),
        ("${{ 'abc }}", "'${{' without a closing '}}'", 0),
        ("${{ a ? b }}", "unexpected character '?'", 6),
        ("${{ and }}", "unexpected 'and'", 4),
        ("${{ 'x\\q' }}", "unknown escape \\q in string", 6),
    ],
)
def test_syntax_errors_point_at_the_problem(text: str, message: str, offset: int) -> None:
    with pytest.raises(expr.ExprError) as info:
        expr.parse_template(text)
    assert info.value.message.startswith(message)
    assert info.value.offset == offset


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(expr.ExprError, match="nested too deeply"):
        expr.parse("(" * 500 + "1" + ")" * 500)
    with pytest.raises(expr.ExprError, match="nested too deeply"):
        expr.parse("not " * 500 + "true")


def test_long_expression_is_refused() -> None:
    with pytest.raises(expr.ExprError, match="longer than"):
        expr.parse("'" + "a" * 5000 + "'")


def test_comparing_different_types_is_an_error() -> None:
    with pytest.raises(expr.ExprError, match="cannot compare string < number"):
        ev("${{ inputs.key < 3 }}")
    assert ev("${{ inputs.key == 3 }}") is False  # equality across types is just false
    assert ev("${{ inputs.flag == 1 }}") is False  # booleans are not numbers


def test_unknown_name_at_run_time() -> None:
    with pytest.raises(expr.ExprError, match="unknown name 'env'"):
        ev("${{ env.HOME }}")


def test_references_found_statically() -> None:
    template = expr.parse_template(
        "${{ steps.snap.outputs.uri }} ${{ inputs['key'] }} ${{ alert.resources[inputs.n].arn }}"
    )
    refs = [r.path for node, _ in template.expressions for r in expr.references(node)]
    assert ("steps", "snap", "outputs", "uri") in refs
    assert ("inputs", "key") in refs
    assert ("inputs", "n") in refs  # a dynamic index is itself a reference
    assert ("alert", "resources") in refs  # what follows a dynamic index is unknown


def test_constant_folding_for_lint() -> None:
    assert expr.constant_value(expr.parse("1 == 2")) == (True, False)
    assert expr.constant_value(expr.parse("inputs.x == 2")) == (False, None)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_never_crashes_the_parser(text: str) -> None:
    try:
        template = expr.parse_template(text)
    except expr.ExprError:
        return
    with contextlib.suppress(expr.ExprError):
        expr.render(text, CTX)
    assert template is not None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("${}()[]'\"., =!<>andortin_0a")), max_size=40))
def test_random_expression_soup_never_crashes(text: str) -> None:
    with contextlib.suppress(expr.ExprError):
        expr.render("${{ " + text + " }}", CTX)


# --- deep shapes: any expression within the 4 KB cap parses to a bounded tree or fails
# with a located ExprError; nothing recurses once per operand.

_CAP = expr.MAX_EXPR_CHARS


def _repeat(unit: str, base: str = "", tail: str = "") -> str:
    """The longest `base + unit*n + tail` within the expression cap."""
    return base + unit * ((_CAP - len(base) - len(tail)) // len(unit)) + tail


def _wrap(opener: str, closer: str, core: str = "1") -> str:
    n = (_CAP - len(core)) // (len(opener) + len(closer))
    return opener * n + core + closer * n


DEEP_SHAPES = {
    "or chain": _repeat("||0", "0"),
    "or words": _repeat(" or 0", "0"),
    "and chain": _repeat("&&1", "1"),
    "mixed and/or": _repeat("||0&&1", "0"),
    "property chain": _repeat(".a", "inputs"),
    "index chain": _repeat("[0]", "inputs"),
    "string index chain": _repeat("['a']", "inputs"),
    "mixed postfix": _repeat(".a[0]", "alert"),
    "bang chain": _repeat("!", tail="true"),
    "not chain": _repeat("not ", tail="true"),
    "parentheses": _wrap("(", ")"),
    "nested lists": _wrap("[", "]"),
    "nested calls": _wrap("length(", ")"),
    "nested defaults": _wrap("default(", ", 1)"),
    "nested indexes": _wrap("inputs[", "]"),
    "comparisons in a chain": _repeat(" || inputs.n == 3", "false"),
}


@pytest.mark.parametrize("text", DEEP_SHAPES.values(), ids=DEEP_SHAPES.keys())
def test_deep_shapes_are_a_located_error(text: str) -> None:
    assert len(text) <= _CAP
    with pytest.raises(expr.ExprError) as info:
        expr.parse(text)
    assert info.value.message.startswith("expression nested too deeply")
    assert 0 < info.value.offset < len(text)  # where the limit is crossed
    # inside a template the offset counts from the template's start
    with pytest.raises(expr.ExprError) as in_template:
        expr.parse_template("x ${{" + text + "}}")
    assert in_template.value.offset == info.value.offset + len("x ${{")


def test_a_chain_of_operands_counts_one_level_each() -> None:
    limit = expr.MAX_DEPTH
    assert ev("${{ " + " || ".join(["false"] * (limit - 1) + ["'x'"]) + " }}") == "x"
    with pytest.raises(expr.ExprError, match="nested too deeply") as info:
        expr.parse(" || ".join(["false"] * (limit + 1)))
    assert info.value.offset == len(" || ".join(["false"] * limit)) + 1  # the last ||
    nested: dict[str, Any] = {"v": 7}
    for _ in range(limit - 2):
        nested = {"a": nested}
    assert expr.evaluate(expr.parse("x" + ".a" * (limit - 2) + ".v"), {"x": nested}) == 7
    with pytest.raises(expr.ExprError, match="nested too deeply"):
        expr.parse("x" + ".a" * limit)
    with pytest.raises(expr.ExprError, match="nested too deeply"):
        expr.parse("x" + "[0]" * limit)


def test_a_long_list_of_alternatives_fits_where_a_chain_does_not() -> None:
    """What the README advises instead of 33 `or`s: list items are side by side."""
    values = [f"t{i}" for i in range(400)]
    node = expr.parse("alert.type in [" + ", ".join(repr(v) for v in values) + "]")
    assert expr.evaluate(node, {"alert": {"type": "t399"}}) is True
    with pytest.raises(expr.ExprError, match="nested too deeply"):
        expr.parse(" or ".join(f"alert.type == {v!r}" for v in values[:40]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 || '' || 'a' || 'b'", "a"),
        ("1 && 2 && 0 && 3", 0),
        ("1 && 'x' || 'y'", "x"),
        ("0 && 'x' || 'y'", "y"),
        ("0 || 1 && 'z'", "z"),
        ("null || 0 and 1 or 2", 2),
        ("!!inputs.n", True),
        ("!!!inputs.n", False),
        ("not not ''", False),
        ("alert.resources[0].tags['env']", "prod"),
        ("alert.resources[inputs.n].arn", None),
    ],
)
def test_chains_evaluate_as_their_nesting_would(text: str, expected: Any) -> None:
    assert expr.evaluate(expr.parse(text), CTX) == expected


def test_short_circuit_skips_what_would_fail() -> None:
    # The right operand is not evaluated once the left decides: no 'cannot compare'.
    assert ev("${{ true || inputs.key < 3 || inputs.key < 4 }}") is True
    assert ev("${{ false && inputs.key < 3 && inputs.key < 4 }}") is False


def test_evaluation_and_references_do_not_recurse_per_operand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the depth limit lifted, 4 KB chains still evaluate: chains are loops."""
    monkeypatch.setattr(expr, "MAX_DEPTH", 10**6)
    expr.parse.cache_clear()
    try:
        assert expr.evaluate(expr.parse(DEEP_SHAPES["or chain"]), {}) == 0
        assert expr.evaluate(expr.parse(DEEP_SHAPES["mixed and/or"]), {}) == 0
        assert expr.evaluate(expr.parse(DEEP_SHAPES["property chain"]), CTX) is None
        assert expr.evaluate(expr.parse(DEEP_SHAPES["index chain"]), CTX) is None
        text = _repeat(" or inputs.n", "inputs.key")
        chain = expr.parse(text)
        assert expr.evaluate(chain, CTX) == "AKIAEXAMPLE"
        refs = list(expr.references(chain))
        assert len(refs) == text.count("inputs")
        assert [r.offset for r in refs] == sorted(r.offset for r in refs)  # left to right
        path = expr.parse(DEEP_SHAPES["mixed postfix"])
        assert [r.path for r in expr.references(path)] == [("alert", "a")]
        node: expr.Node = expr.Literal(0, "")
        for _ in range(5001):
            node = expr.Unary(0, "not", node)
        assert expr.evaluate(node, {}) is True
        assert list(expr.references(node)) == []
    finally:
        expr.parse.cache_clear()


def _deep(child: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One step of a random shape: an operator, a wrapper or a long chain around `child`."""
    n = st.integers(min_value=1, max_value=1400)
    return st.one_of(
        st.tuples(child, child, st.sampled_from([" || ", " && ", " == ", " in "])).map(
            lambda t: t[0] + t[2] + t[1]
        ),
        st.tuples(child, n, st.sampled_from(["||0", " and 1", ".a", "[0]", "['k']"])).map(
            lambda t: t[0] + t[2] * t[1]
        ),
        st.tuples(child, n, st.sampled_from(["!", "not "])).map(lambda t: t[2] * t[1] + t[0]),
        st.tuples(child, n, st.sampled_from([("(", ")"), ("[", "]"), ("length(", ")")])).map(
            lambda t: t[2][0] * t[1] + t[0] + t[2][1] * t[1]
        ),
        st.tuples(child, child, st.sampled_from(["default", "contains", "join"])).map(
            lambda t: f"{t[2]}({t[0]}, {t[1]})"
        ),
        st.tuples(child, child).map(lambda t: f"{t[0]}[{t[1]}]"),
    )


_LEAVES = st.sampled_from(["0", "1", "''", "'a'", "inputs", "inputs.n", "alert", "x", "null"])


@settings(max_examples=200, deadline=None)
@given(st.recursive(_LEAVES, _deep, max_leaves=12))
def test_random_deep_shapes_never_crash(text: str) -> None:
    """Any shape: a tree of bounded height or an ExprError; never another exception."""
    try:
        node = expr.parse(text)
    except expr.ExprError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert node.height <= expr.MAX_DEPTH
    list(expr.references(node))
    with contextlib.suppress(expr.ExprError):
        expr.evaluate(node, CTX)
    expr.constant_value(node)


def test_where_keeps_the_objects_whose_field_is_set() -> None:
    from irbook.expr import ExprError, evaluate, parse

    resources = [
        {"type": "AwsIamAccessKey", "arn": None},
        {"type": "AwsS3Bucket", "arn": "arn:aws:s3:::models"},
        {"type": "AwsEc2Instance", "arn": ""},
        "not an object",
    ]
    got = evaluate(parse("where(alert.resources, 'arn')"), {"alert": {"resources": resources}})
    assert got == [{"type": "AwsS3Bucket", "arn": "arn:aws:s3:::models"}]
    assert evaluate(parse("where(alert.missing, 'arn')"), {"alert": {}}) == []
    with pytest.raises(ExprError, match="where\\(\\) needs a list"):
        evaluate(parse("where(alert.title, 'arn')"), {"alert": {"title": "x"}})


def test_where_counts_an_empty_object_or_list_as_not_set() -> None:
    """Normalizers give every resource a tags object: where(.., 'tags') keeps the tagged."""
    from irbook.expr import evaluate, parse

    resources = [
        {"type": "AwsIamAccessKey", "tags": {}},
        {"type": "AwsEc2Instance", "tags": {}, "names": []},
        {"type": "AwsS3Bucket", "tags": {"ml_endpoint": "fraud-scoring"}, "names": ["m"]},
    ]
    context = {"alert": {"resources": resources}}
    assert evaluate(parse("where(alert.resources, 'tags')"), context) == [resources[2]]
    assert evaluate(parse("where(alert.resources, 'names')"), context) == [resources[2]]


@pytest.mark.parametrize(
    ("time", "hours", "expected"),
    [
        ("2026-11-27T22:41:07Z", 72, "2026-11-30T22:41:07Z"),  # GDPR's breach clock
        ("2026-11-27T22:41:07.520Z", 1.5, "2026-11-28T00:11:07Z"),
        ("2026-11-27T23:41:07+01:00", 24, "2026-11-28T22:41:07Z"),  # any offset, out in UTC
        ("2026-11-27T22:41:07", 1, "2026-11-27T23:41:07Z"),  # no offset: taken as UTC
        (None, 72, None),  # an alert without a time
        ("not a time", 72, None),
        ("9999-12-31T23:00:00Z", 72, None),  # past the calendar
    ],
)
def test_add_hours_gives_utc_time_text(time: Any, hours: float, expected: Any) -> None:
    assert expr.render("${{ add_hours(t, h) }}", {"t": time, "h": hours}) == expected


@pytest.mark.parametrize("hours", ["72", True, None])
def test_add_hours_needs_a_number(hours: Any) -> None:
    with pytest.raises(expr.ExprError, match="add_hours"):
        expr.render("${{ add_hours('2026-11-27T22:41:07Z', h) }}", {"h": hours})


def test_where_with_a_value_keeps_the_objects_whose_field_equals_it() -> None:
    from irbook.expr import evaluate, parse

    resources = [
        {"type": "AwsIamAccessKey", "id": "ASIAIOSFODNN7EXAMPLE"},
        {"type": "AwsEc2Instance", "id": "i-0a1b2c3d4e5f67890"},
        {"type": "AwsEc2InstanceProfile", "id": "ml"},
        {"id": "no type"},
        "not an object",
    ]
    context = {"alert": {"resources": resources}}
    got = evaluate(parse("where(alert.resources, 'type', 'AwsEc2Instance')"), context)
    assert got == [{"type": "AwsEc2Instance", "id": "i-0a1b2c3d4e5f67890"}]
    assert evaluate(parse("where(alert.resources, 'type', 'awsec2instance')"), context) == []
    # equality as == has it: true is not 1
    flags = {"alert": {"resources": [{"on": True}, {"on": 1}]}}
    assert evaluate(parse("where(alert.resources, 'on', true)"), flags) == [{"on": True}]
