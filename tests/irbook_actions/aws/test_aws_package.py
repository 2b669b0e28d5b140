"""Loading the aws namespace is cheap and safe: no boto3, every model strict and lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from irbook.registry import Registry
from tests.support.aws import aws_keys, spec


def test_loading_the_namespace_registers_every_action_without_boto3() -> None:
    code = (
        "import sys\n"
        "from irbook.registry import REGISTRY\n"
        "REGISTRY.load_namespace('aws')\n"
        "keys = [k for k in REGISTRY._specs if k.startswith('aws.')]\n"
        "heavy = sorted(m for m in ('boto3', 'botocore', 'moto') if m in sys.modules)\n"
        "print(len(keys), heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == str(len(aws_keys()))
    assert done.stdout.strip().endswith("[]"), f"loading aws imported {done.stdout}"


def test_the_entry_point_names_the_package() -> None:
    assert "irbook_actions.aws" in Registry().entry_points()["aws"]


@pytest.mark.parametrize("key", sorted(aws_keys()))
def test_models_are_strict_and_built_on_first_use(key: str) -> None:
    action = spec(key)
    assert action.params.model_config.get("extra") == "forbid"
    assert action.params.model_config.get("defer_build") is True
    assert action.result.model_config.get("defer_build") is True


def test_these_tests_cannot_reach_the_network() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        with pytest.raises(ConnectionRefusedError, match=r"may not connect to 192\.0\.2\.1"):
            sock.connect(("192.0.2.1", 443))
