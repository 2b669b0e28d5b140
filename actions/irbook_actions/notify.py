"""notify actions."""
