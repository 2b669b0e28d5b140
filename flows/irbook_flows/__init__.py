"""Compiles playbooks into Prefect flows (the runtime issue builds this package)."""
