"""jira actions (filled in by the notify issue)."""
