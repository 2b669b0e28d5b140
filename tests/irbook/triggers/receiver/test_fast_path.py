"""The receiver's hot path takes shortcuts; each must give what the reference path gives.

- bodies are parsed by orjson where it reads them as the standard library does;
- the stored alert JSON is made by orjson from the match context, not by pydantic;
- `POST /hooks/{source}` is a bare ASGI handler in front of Starlette, and the Starlette
  route (reached under a root path) answers the same.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irbook.model.alert import Alert
from irbook.triggers import app as app_module
from irbook.triggers.app import WebhookReceiver, _alert_json, _context, _Headers, _parse_json
from irbook.triggers.config import load_config
from irbook.triggers.normalizers import NORMALIZERS
from tests.support.payloads import PAYLOADS, load
from tests.support.receiver import SECRETS, RecordingStarter, body_of, write_fixture

TOKEN = {"X-Irbook-Token": SECRETS["GD_TOKEN"], "Content-Type": "application/json"}


def reference_parse(body: bytes) -> tuple[str, Any]:
    """What `_parse_json` must give: the standard library's outcome."""
    original = app_module.orjson.loads

    def refuse(data: Any) -> Any:
        raise app_module.orjson.JSONDecodeError("off", "", 0)

    app_module.orjson.loads = refuse  # type: ignore[assignment]
    try:
        return ("ok", _parse_json(body))
    except ValueError as exc:
        return ("error", str(exc))
    finally:
        app_module.orjson.loads = original  # type: ignore[assignment]


def outcome(body: bytes) -> tuple[str, Any]:
    try:
        return ("ok", _parse_json(body))
    except ValueError as exc:
        return ("error", str(exc))


def same(a: Any, b: Any) -> bool:
    """Equal JSON data, types included (1 and 1.0 differ; -0.0 and 0.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    return bool(a == b)


EDGES = [
    b'{"id": 99999999999999999999999}',  # beyond 64 bits: orjson would make it a float
    b'{"id": 18446744073709551615, "n": -9223372036854775808}',
    b'{"id": "12345678901234567890123"}',  # digits in a string: the slow path, same data
    b'{"a": 1e400}',
    b'{"a": -0.0, "b": 0, "c": 1.5e-7, "d": 0.1}',
    b"\xef\xbb\xbf{}",
    b"NaN",
    b'{"a": Infinity}',
    b'"\\ud800"',
    b'{"a": 1, "a": 2}',
    b"\xff\xfe",
    b" ",
    b"",
    b"[1, 2",
    b"[" * 2000 + b"]" * 2000,
    b'{"s": "\\u0000\\n\\u2028\xc3\xa9"}',
]


@pytest.mark.parametrize("body", EDGES, ids=range(len(EDGES)))
def test_parse_gives_what_the_standard_library_gives(body: bytes) -> None:
    got, want = outcome(body), reference_parse(body)
    assert got[0] == want[0]
    if got[0] == "ok":
        assert same(got[1], want[1])
    else:
        assert got[1] == want[1]


def test_a_huge_integer_keeps_every_digit() -> None:
    assert _parse_json(b'{"id": 99999999999999999999999}') == {"id": 99999999999999999999999}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_parse_agrees_with_the_standard_library_on_any_json(value: Any, pretty: bool) -> None:
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=not pretty)
    body = text.encode("utf-8", "surrogatepass")
    got, want = outcome(body), reference_parse(body)
    assert got[0] == want[0]
    if got[0] == "ok":
        assert same(got[1], want[1])


FORMATS = {"google": "google_secops", "generic": None}  # generic needs its mapping


@pytest.mark.parametrize("name", sorted(p.stem for p in PAYLOADS.glob("*.json")))
def test_stored_alert_json_is_the_models_json(name: str) -> None:
    prefix = name.split("_", 1)[0]
    fmt = FORMATS.get(prefix, prefix)
    if fmt is None:
        pytest.skip("the generic format is configured per source")
    alerts = NORMALIZERS[fmt](load(name), {})
    assert alerts
    for alert in alerts:
        made = _alert_json(_context(alert))
        assert json.loads(made) == json.loads(alert.model_dump_json())
        assert Alert.model_validate_json(made) == alert


def test_stored_alert_json_falls_back_for_numbers_orjson_cannot_write() -> None:
    alert = Alert(id="big", source="guardduty", raw={"n": 10**30, "s": "é"})
    made = _alert_json(_context(alert))
    assert json.loads(made) == {
        **json.loads(alert.model_dump_json()),
        "raw": {"n": 10**30, "s": "é"},
    }


def test_headers_keep_every_copy_and_read_case_insensitively() -> None:
    headers = _Headers(
        [(b"x-token", b"a"), (b"Content-Type", b"application/json"), (b"x-token", b"b")]
    )
    assert headers.items() == [
        ("x-token", "a"),
        ("content-type", "application/json"),
        ("x-token", "b"),
    ]
    assert headers["X-Token"] == "a"
    assert headers.get("content-type") == "application/json"
    assert headers.get("missing") is None
    assert len(headers) == 3
    assert list(headers) == ["x-token", "content-type", "x-token"]


def post_both(
    hooks: WebhookReceiver, requests: list[tuple[str, str, bytes, dict[str, str]]]
) -> Any:
    """Each request through the bare handler, then through Starlette's route (under a
    root path, which the bare handler leaves to Starlette)."""

    async def main() -> list[tuple[httpx.Response, httpx.Response]]:
        app = app_module.create_app(hooks=hooks)
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        routed = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, root_path="/irbook"),
            base_url="http://t",
        )
        out = []
        async with fast, routed:
            for method, path, body, headers in requests:
                one = await fast.request(method, path, content=body, headers=headers)
                two = await routed.request(method, "/irbook" + path, content=body, headers=headers)
                out.append((one, two))
        return out

    return asyncio.run(main())


def test_the_bare_handler_answers_as_the_starlette_route(hooks: WebhookReceiver) -> None:
    big = b"x" * 5000
    cases = [
        ("POST", "/hooks/gd", body_of("fast-1"), TOKEN),  # 202, then deduplicated
        ("POST", "/hooks/gd", body_of("fast-2"), {"X-Irbook-Token": "wrong"}),  # 401
        ("POST", "/hooks/nope", b"{}", TOKEN),  # 404
        ("GET", "/hooks/gd", b"", TOKEN),  # 405, Starlette's either way
        ("POST", "/hooks/gd", b"{", TOKEN),  # 400
        ("POST", "/hooks/gd", b"<a/>", {**TOKEN, "Content-Type": "application/xml"}),  # 415
        ("POST", "/hooks/gd", b'{"detail": 1}', TOKEN),  # 422
        ("POST", "/hooks/small", big, TOKEN),  # 413
    ]
    for (one, two), (method, path, _, _) in zip(post_both(hooks, cases), cases, strict=True):
        assert one.status_code == two.status_code, (method, path)
        assert one.headers["content-type"] == two.headers["content-type"]
        if path == "/hooks/gd" and one.status_code == 202:
            first, second = one.json()["queued"][0], two.json()["queued"][0]
            assert (first["status"], second["status"]) == ("queued", "deduplicated")
            assert first["run_id"] == second["run_id"]
        else:
            assert one.text == two.text, (method, path)


def test_latency_histogram_is_cumulative() -> None:
    from irbook.triggers.app import Metrics

    metrics = Metrics()
    for seconds in (0.001, 0.005, 0.007, 0.3, 99.0):
        metrics.observe(seconds)
    metrics.inc_source("irbook_webhook_received_total", "gd")
    metrics.inc("irbook_webhook_received_total", source="gd")
    text = metrics.render({})
    buckets = {
        line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("irbook_webhook_request_duration_seconds_bucket")
    }
    assert buckets["0.005"] == 2  # a bound holds what equals it
    assert buckets["0.01"] == 3
    assert buckets["0.25"] == 3
    assert buckets["0.5"] == 4
    assert buckets["10"] == 4
    assert buckets["+Inf"] == 5
    assert 'irbook_webhook_received_total{source="gd"} 2' in text
    assert metrics.get("irbook_webhook_received_total", source="gd") == 2


def test_a_body_is_normalized_again_only_until_it_repeats(
    hooks: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = NORMALIZERS["guardduty"]

    def counting(payload: Any, options: Any = None) -> Any:
        calls.append(payload["detail"]["id"])
        return original(payload, options)

    monkeypatch.setitem(NORMALIZERS, "guardduty", counting)
    headers = {"x-irbook-token": SECRETS["GD_TOKEN"]}
    storm = body_of("storm-1")
    for _ in range(5):
        assert hooks.process("gd", headers, storm, "application/json").status == 202
    # The first copy is normalized; the second too, and is remembered; the rest are not.
    assert calls == ["storm-1", "storm-1"]
    for i in range(3):  # distinct bodies are normalized once each and not remembered
        assert hooks.process("gd", headers, body_of(f"one-{i}"), None).status == 202
    assert calls[2:] == ["one-0", "one-1", "one-2"]
    assert len(hooks._recent) == 1


def test_a_receiver_without_dispatch_commits_and_another_dispatcher_starts(
    tmp_path: Path,
) -> None:
    from irbook.triggers.queue import AlertQueue
    from tests.support.receiver import drain

    config_path, _ = write_fixture(tmp_path)
    starter = RecordingStarter()
    receiver = WebhookReceiver(
        load_config(str(config_path), env=SECRETS),
        starter,
        db_path=str(tmp_path / "irbook.db"),
        dispatch=False,
    )
    receiver.start()
    try:
        headers = {"x-irbook-token": SECRETS["GD_TOKEN"]}
        answer = receiver.process("gd", headers, body_of("later-1"), None)
        assert answer.status == 202
        assert [row["status"] for row in receiver.queue.rows()] == ["queued"]
        assert starter.calls == []
    finally:
        receiver.stop()
    queue = AlertQueue(tmp_path / "irbook.db")
    elsewhere = RecordingStarter()
    try:
        drain(queue, elsewhere, poll_interval=0.02)
    finally:
        queue.close()
    assert [call.alert.id for call in elsewhere.calls] == ["later-1"]
    assert starter.calls == []


def call_asgi(app: Any, path: str, messages: list[dict[str, Any]]) -> tuple[int, Any, int]:
    """POST to the app with these ASGI receive messages (no Content-Length); returns the
    status, the JSON answer, and how many messages the app pulled."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return messages[pulled - 1]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"x-irbook-token", SECRETS["GD_TOKEN"].encode())],
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"]), pulled


def test_a_sender_that_disconnects_mid_body_is_refused_and_nothing_is_queued(
    hooks: WebhookReceiver,
) -> None:
    app = app_module.create_app(hooks=hooks)
    half = {"type": "http.request", "body": body_of("gone-1")[:100], "more_body": True}
    status, answer, _ = call_asgi(app, "/hooks/gd", [half, {"type": "http.disconnect"}])
    assert (status, answer["reason"]) == (400, "disconnected")
    assert hooks.queue.rows() == []
    assert hooks.metrics.get("irbook_webhook_rejected_total", source="gd", reason="disconnected")


def test_a_streamed_body_over_the_limit_is_refused_without_reading_the_rest(
    hooks: WebhookReceiver,
) -> None:
    app = app_module.create_app(hooks=hooks)
    chunk = {"type": "http.request", "body": b"x" * 3000, "more_body": True}
    status, answer, pulled = call_asgi(app, "/hooks/small", [chunk] * 10)  # limit 4096
    assert (status, answer["reason"]) == (413, "too-large")
    assert pulled == 2  # stopped at the chunk that passed the limit
    assert hooks.queue.rows() == []
