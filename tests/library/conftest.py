"""Fixtures of the playbook library's live tests: one Prefect API for the session (the
runtime tests' own), and the seeded fake cloud of tests/library/live_cloud.py."""

from tests.library.live_cloud import cloud as cloud
from tests.runtime.conftest import prefect_api as prefect_api

__all__ = ["cloud", "prefect_api"]
