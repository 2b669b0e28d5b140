"""`irbook warm start|stop|status`, and the warm runner's entry point (`python -P -m
irbook.cli.warm`, which `irbook warm start` spawns).

The fork server is irbook_flows.warm; the client, which `irbook run` calls before it
imports anything heavy, is irbook.warm. This module joins them to the command line: the
warm runner preloads the `irbook run` handler's modules, and each forked child runs
irbook.cli.main's `main` with the client's argv, the code path of a cold `irbook run`.
"""

from __future__ import annotations

import argparse
import sys

from irbook.cli.main import main as irbook_main
from irbook_flows.warm import finish, run_zygote, start_warm, stop_warm, warm_status

ENTRY = "irbook.cli.warm"
# What a run's command imports, imported once by the warm runner (by name, as
# irbook.cli.main imports a handler's module when its command runs).
PRELOAD = ("irbook.cli.runs", "irbook.cli.record")


def cmd_warm(args: argparse.Namespace) -> int:
    """`irbook warm start|stop|status`."""
    if args.verb == "start":
        print(start_warm([sys.executable, "-P", "-m", ENTRY]))
        return 0
    if args.verb == "stop":
        print(stop_warm()[1])
        return 0
    running, line = warm_status()
    print(line)
    return 0 if running else 1


def runner() -> int:
    """The warm runner; returns only in a forked child, with its `irbook` exit status."""
    argv = run_zygote(PRELOAD)  # the child comes back as the client's process
    return finish(lambda: irbook_main(argv))


if __name__ == "__main__":
    sys.exit(runner())


__all__ = ["ENTRY", "cmd_warm", "runner"]
