"""Safety lint: findings with a severity, kept apart from errors (exit 0 unless --strict)."""

from irbook.lint.rules import RULES, lint_playbook

__all__ = ["RULES", "lint_playbook"]
