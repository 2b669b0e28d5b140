"""Compiles playbooks into Prefect flows (the runtime issue builds this package)."""

#: The one flow of every run (irbook_flows.flow.run_playbook), in this process and on
#: workers; `irbook deploy` names its deployments `<FLOW_NAME>/irbook-<playbook id>`.
FLOW_NAME = "irbook-playbook"
