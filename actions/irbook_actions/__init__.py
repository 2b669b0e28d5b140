"""irbook's action library: AWS containment and evidence, Slack, Jira.

Modules here register actions with `irbook.registry.action`; they import boto3,
slack_sdk and jira only inside action bodies, so loading them stays fast.
"""
