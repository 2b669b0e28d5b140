"""The `irbook` command line: the parser (main.py) and every command's handler, one module
per concern. The top layer: it may import irbook_flows and irbook_actions, nothing imports
it (ARCHITECTURE.md; tests/test_import_graph.py checks it)."""
