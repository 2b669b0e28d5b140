"""Fixtures of the playbook library's live tests: the seeded fake cloud of
tests/support/live_cloud.py (the session's Prefect API comes from tests/conftest.py)."""

from tests.support.live_cloud import cloud as cloud

__all__ = ["cloud"]
