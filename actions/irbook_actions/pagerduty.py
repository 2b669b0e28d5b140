"""pagerduty actions."""
