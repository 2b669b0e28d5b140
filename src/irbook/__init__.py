"""irbook: incident-response playbooks for AI deployments.

The core package imports neither prefect nor boto3 at module level, so that
`irbook validate` and `irbook plan` start fast and work without network. Importing the
package itself imports nothing: the modules (irbook.validate, irbook.loader, ...) are the
API, each with its `__all__`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
