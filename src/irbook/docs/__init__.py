"""Human runbooks generated from playbooks, for when the automation is unavailable."""

from irbook.docs.runbook import render_runbook, runbook_name

__all__ = ["render_runbook", "runbook_name"]
