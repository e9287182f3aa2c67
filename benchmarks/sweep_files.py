"""What the scripts that read structure sweeps share: their two arguments, and how they write their results.

``--work`` names a sweep's folder (``benchmarks/eval_structures.py --work DIR``), once per training split;
``--out`` a Markdown file for the table, beside which the figures go as JSON, one line per catalog (so that
a diff shows which catalogs changed).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sweep_parser(description: str) -> argparse.ArgumentParser:
    """A parser with ``--work`` (repeatable, required) and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--work", type=Path, action="append", required=True,
                        help="a structure sweep's --work folder (repeat for several splits)")
    parser.add_argument("--out", type=Path, help="write the table (Markdown) here and the figures beside it (.json)")
    return parser


def write_results(out: Path, markdown: str, results: Mapping[str, Any]) -> None:
    """Write ``markdown`` to ``out`` and ``results`` to ``out`` with the suffix ``.json``, a line per key."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    per_line = (f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in results.items())
    out.with_suffix(".json").write_text("{\n" + ",\n".join(per_line) + "\n}\n")
