"""``python -m training.realaudio build ...``: build the real-audio evaluation sets (see :mod:`.build`)."""

from __future__ import annotations

import argparse
import logging
import sys

from training.realaudio.build import add_build_arguments, run_build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.realaudio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_arguments(sub.add_parser("build", help="build the recordings and/or melodies set"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_build(args)
    except ValueError as exc:
        print(f"real-audio build: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
