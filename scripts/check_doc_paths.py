"""Check that every repository path cited in README.md and docs/**/*.md exists.

A path is a backquoted or linked token that starts with a top-level folder of the repository (or is a
top-level file) and names a file or folder, e.g. ``training/pipeline.py`` or ``docs/eval/report.md``;
``::test_name`` suffixes and ``:line`` suffixes are ignored. Run from anywhere; exits 1 and prints each
missing path with the file that cites it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = re.compile(r"`([^`\s]+)`|\]\(([^)\s#]+)")


def cited_paths(text: str, top: set[str]) -> set[str]:
    found = set()
    for m in TOKEN.finditer(text):
        raw = (m.group(1) or m.group(2) or "").split("::")[0].rstrip(".,:;")
        raw = re.sub(r":\d+(-\d+)?$", "", raw)
        if "://" in raw or "*" in raw or "<" in raw or "{" in raw:
            continue
        if raw.split("/")[0] in top and ("/" in raw or "." in raw):
            found.add(raw)
    return found


def main() -> int:
    top = {p.name for p in REPO.iterdir() if not p.name.startswith(".")} - {"build", "data", "artifacts"}
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    missing = []
    for doc in docs:
        for path in sorted(cited_paths(doc.read_text(encoding="utf-8"), top)):
            if not (REPO / path).exists() and not (doc.parent / path).exists():
                missing.append(f"{doc.relative_to(REPO)}: {path}")
    for line in missing:
        print(line)
    print(f"doc paths: {len(missing)} missing in {len(docs)} files" if missing else f"doc paths ok ({len(docs)} files)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
