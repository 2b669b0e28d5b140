"""irbook: incident-response playbooks for AI deployments.

The core package imports neither prefect nor boto3 at module level, so that
`irbook validate` and `irbook plan` start fast and work without network.
"""

__version__ = "0.1.0"
