"""`irbook sandbox`: a local fake AWS (moto's server) seeded with a small AI deployment.

It prints the environment that points irbook at it, so that a live playbook can be run
against it for a demo or a rehearsal, and stops with Ctrl-C. Nothing here can reach a
real AWS account: moto answers on loopback and the seed uses fixed fake credentials.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time

from irbook.errors import IrbookError


def cmd_sandbox(args: argparse.Namespace) -> int:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise IrbookError(
            "the sandbox needs moto's server: pip install 'irbook[sandbox]'"
        ) from None
    from irbook_actions.aws import sandbox

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log on the terminal
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        created = sandbox.seed(url, region=args.region)
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": sandbox.FAKE_KEY,
            "AWS_SECRET_ACCESS_KEY": sandbox.FAKE_KEY,
            "AWS_REGION": args.region,
        }
        print("# a fake AWS is running; point irbook at it with:")
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
        print("# what the sandbox holds:")
        for key, value in created.items():
            print(f"#   {key} = {value}")
        if args.once:
            return 0
        print("# Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("sandbox stopped", file=sys.stderr)
        return 0
    finally:
        server.stop()
