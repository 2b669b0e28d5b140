"""RateLimiter: a burst, then 429 with a Retry-After that a client can trust."""

from __future__ import annotations

import threading

import pytest

from irbook.triggers.limits import RateLimiter, retry_after_header

T0 = 1_700_000_000.0


def test_a_burst_is_allowed_then_refused_with_the_time_to_the_next_token() -> None:
    limiter = RateLimiter(rate=1.0, burst=3)
    assert [limiter.check("splunk", T0) for _ in range(3)] == [None, None, None]
    wait = limiter.check("splunk", T0)
    assert wait == pytest.approx(1.0)
    assert retry_after_header(wait or 0) == "1"


def test_tokens_refill_over_injected_time() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    assert limiter.check("s", T0) is None
    assert limiter.check("s", T0) is None
    assert limiter.check("s", T0) == pytest.approx(0.5)
    assert limiter.check("s", T0 + 0.25) == pytest.approx(0.25)
    assert limiter.check("s", T0 + 0.5) is None
    assert limiter.check("s", T0 + 0.5) == pytest.approx(0.5)


def test_obeying_retry_after_succeeds() -> None:
    limiter = RateLimiter(rate=0.1, burst=1)
    assert limiter.check("s", T0) is None
    wait = limiter.check("s", T0 + 3)
    assert wait == pytest.approx(7.0)
    assert limiter.check("s", T0 + 3 + int(retry_after_header(wait or 0))) is None


def test_a_long_idle_period_refills_only_up_to_the_burst() -> None:
    limiter = RateLimiter(rate=5.0, burst=4)
    results = [limiter.check("s", T0 + 3600) for _ in range(6)]
    assert results[:4] == [None] * 4
    assert all(r is not None for r in results[4:])


def test_sources_have_separate_buckets() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.check("datadog", T0) is None
    assert limiter.check("datadog", T0) is not None
    assert limiter.check("slack", T0) is None


def test_a_clock_stepping_back_grants_nothing() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)
    assert limiter.check("s", T0) is None
    assert limiter.check("s", T0 - 100) is not None
    # ...and does not push the refill further out either.
    assert limiter.check("s", T0 + 1) is None


def test_concurrent_requests_share_the_burst_exactly() -> None:
    limiter = RateLimiter(rate=1.0, burst=10)
    start = threading.Barrier(40)
    results: list[float | None] = []
    lock = threading.Lock()

    def hit() -> None:
        start.wait()
        answer = limiter.check("flood", T0)
        with lock:
            results.append(answer)

    workers = [threading.Thread(target=hit) for _ in range(40)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert len(results) == 40
    assert results.count(None) == 10


def test_many_sources_evict_idle_full_buckets_not_throttled_ones() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_sources=2)
    assert limiter.check("idle-1", T0 - 10) is None
    assert limiter.check("idle-2", T0 - 10) is None
    assert limiter.check("throttled", T0) is None  # a third source: full idle buckets go
    assert limiter.check("throttled", T0) is not None
    assert limiter.check("newcomer", T0) is None  # over the cap again: nothing full to drop
    assert limiter.check("throttled", T0) is not None
    assert limiter.check("newcomer", T0) is not None


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (1, 0.5)])
def test_nonsense_limits_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.01, "1"), (1.0, "1"), (1.01, "2"), (59.5, "60")]
)
def test_retry_after_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header
