"""What tests share: fake Slack and Jira servers, the AWS recording clients and worlds, the
receiver's helpers, the runtime's test actions, the live-cloud sessions of the playbook
library. Test folders hold tests and their conftest.py; everything they import lives here.
"""
