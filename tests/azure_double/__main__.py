"""`python -m tests.azure_double serve [--state DIR]`: start the double, print one JSON line
(arm_endpoint, subscription_id, tenant_id, ca_bundle, files_port, state_dir, env), serve until
SIGTERM or SIGINT, then stop everything it started (replicas included)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.azure_double.server import AzureDouble


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.azure_double")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Azure double until SIGTERM")
    serve.add_argument("--state", type=Path, help="state folder (default: a temp folder)")
    options = parser.parse_args(argv)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with AzureDouble(state_dir=options.state) as double:
        line = {
            "arm_endpoint": double.arm_endpoint,
            "subscription_id": double.subscription_id,
            "tenant_id": double.tenant_id,
            "ca_bundle": str(double.ca_bundle),
            "files_port": double.files_port,
            "state_dir": str(double.state_dir),
            "env": double.env,
        }
        print(json.dumps(line), flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
