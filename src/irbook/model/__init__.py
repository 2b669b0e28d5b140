"""Pydantic models of the irbook/v1 format: playbooks, steps, inputs, triggers, alerts."""

from irbook.model.alert import Actor, Alert, Resource
from irbook.model.inputs import InputSpec
from irbook.model.playbook import Metadata, Playbook
from irbook.model.step import Acknowledgement, Approval, AwsTarget, Step
from irbook.model.triggers import Trigger

__all__ = [
    "Acknowledgement",
    "Actor",
    "Alert",
    "Approval",
    "AwsTarget",
    "InputSpec",
    "Metadata",
    "Playbook",
    "Resource",
    "Step",
    "Trigger",
]
