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
