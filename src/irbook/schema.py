"""The JSON Schema of the playbook format, for editors' YAML language servers."""

from __future__ import annotations

from typing import Any

from irbook.model import Playbook


def playbook_schema() -> dict[str, Any]:
    schema = Playbook.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://irbook.dev/schema/irbook-v1-playbook.json"
    schema["title"] = "irbook playbook (apiVersion irbook/v1)"
    return schema
