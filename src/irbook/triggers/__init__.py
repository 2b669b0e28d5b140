"""Which playbooks an alert starts: trigger matching (normalizers and the webhook come later)."""

from irbook.triggers.match import matches, matching_playbooks

__all__ = ["matches", "matching_playbooks"]
