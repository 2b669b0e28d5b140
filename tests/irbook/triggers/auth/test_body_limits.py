"""Body size limits: refuse early, and never pull the rest of an oversized body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from irbook.triggers.limits import (
    DEFAULT_BODY_LIMIT,
    BadContentLength,
    BodyTooLarge,
    aread_limited,
    check_content_length,
    read_limited,
)


class Source:
    """Body chunks that fail the test if pulled past `allowed` chunks."""

    def __init__(self, chunks: list[bytes], allowed: int | None = None) -> None:
        self.chunks = chunks
        self.allowed = len(chunks) if allowed is None else allowed
        self.pulled = 0
        self.closed = False

    def sync(self) -> Iterator[bytes]:
        try:
            for chunk in self.chunks:
                if self.pulled >= self.allowed:
                    raise AssertionError("read past the limit")
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True

    async def async_(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                if self.pulled >= self.allowed:
                    raise AssertionError("read past the limit")
                self.pulled += 1
                yield chunk
                await asyncio.sleep(0)
        finally:
            self.closed = True


def test_a_body_of_exactly_the_limit_is_read_whole() -> None:
    source = Source([b"abcd", b"", b"efgh", b"ij"])
    assert read_limited(source.sync(), limit=10) == b"abcdefghij"
    assert source.pulled == 4


def test_one_byte_over_is_refused_without_reading_the_rest() -> None:
    source = Source([b"abcd", b"efgh", b"ijk", b"never", b"read"], allowed=3)
    with pytest.raises(BodyTooLarge) as caught:
        read_limited(source.sync(), limit=10)
    assert caught.value.limit == 10
    assert source.pulled == 3
    assert source.closed


def test_a_single_huge_chunk_is_refused() -> None:
    source = Source([b"x" * (DEFAULT_BODY_LIMIT + 1), b"more"], allowed=1)
    with pytest.raises(BodyTooLarge):
        read_limited(source.sync())


def test_the_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_BODY_LIMIT == 1024 * 1024
    assert len(read_limited([b"x" * DEFAULT_BODY_LIMIT])) == DEFAULT_BODY_LIMIT


def test_an_empty_body_is_fine() -> None:
    assert read_limited([], limit=0) == b""
    with pytest.raises(BodyTooLarge):
        read_limited([b"x"], limit=0)


def test_bytearray_and_memoryview_chunks_come_back_as_bytes() -> None:
    assert read_limited([bytearray(b"ab"), memoryview(b"cd")], limit=4) == b"abcd"  # type: ignore[list-item]


def test_async_exact_limit_is_read_whole() -> None:
    source = Source([b"abcd", b"efgh", b"ij"])
    assert asyncio.run(aread_limited(source.async_(), limit=10)) == b"abcdefghij"


def test_async_one_byte_over_is_refused_without_reading_the_rest() -> None:
    source = Source([b"abcd", b"efgh", b"ijk", b"never"], allowed=3)

    async def main() -> None:
        with pytest.raises(BodyTooLarge):
            await aread_limited(source.async_(), limit=10)

    asyncio.run(main())
    assert source.pulled == 3
    assert source.closed


def test_async_works_with_any_async_iterable() -> None:
    class Stream:
        def __init__(self) -> None:
            self.parts = [b"a", b"b"]

        def __aiter__(self) -> Stream:
            return self

        async def __anext__(self) -> bytes:
            if not self.parts:
                raise StopAsyncIteration
            return self.parts.pop(0)

    assert asyncio.run(aread_limited(Stream(), limit=2)) == b"ab"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Length": "0"}, 0),
        ({"content-length": "1048576"}, 1048576),
        ({"CONTENT-LENGTH": " 12 "}, 12),
        ({"Content-Length": "12", "content-length": "12"}, 12),
    ],
)
def test_a_declared_length_within_the_limit_is_returned(
    headers: dict[str, str], expected: int | None
) -> None:
    assert check_content_length(headers) == expected


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(BodyTooLarge) as caught:
        check_content_length({"Content-Length": "1048577"})
    assert caught.value.declared == 1048577
    assert caught.value.limit == DEFAULT_BODY_LIMIT
    with pytest.raises(BodyTooLarge):
        check_content_length({"content-length": "11"}, limit=10)
    with pytest.raises(BodyTooLarge):
        check_content_length({"content-length": "9" * 18}, limit=10)


@pytest.mark.parametrize(
    "value", ["", "abc", "-1", "+5", "1_000", "1e3", "0x10", "١٢", "1, 2", "9" * 19]
)
def test_a_content_length_that_is_not_a_byte_count_is_refused(value: str) -> None:
    with pytest.raises(BadContentLength):
        check_content_length({"Content-Length": value})


def test_conflicting_content_lengths_are_refused() -> None:
    """Two lengths is how request smuggling starts."""
    with pytest.raises(BadContentLength):
        check_content_length({"Content-Length": "5", "content-length": "6"})
