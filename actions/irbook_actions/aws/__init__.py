"""AWS actions."""
