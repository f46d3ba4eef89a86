"""``python -m exporters [--one-shot] --config FILE`` (the real CLI is ``alertmail export``)."""

from __future__ import annotations

import gc

if __name__ == "__main__":
    # No cyclic GC while importing and during a one-shot
    # run; `run` turns it back on for the long-running server.
    gc.disable()

import argparse
import logging
import sys

from exporters.cli import run
from receiver.errors import ConfigError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m exporters")
    parser.add_argument("--config", required=True)
    parser.add_argument("--one-shot", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args.config, one_shot=args.one_shot)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
