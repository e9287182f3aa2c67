"""Pause Python's cyclic garbage collector while a step builds millions of objects that make no cycles.

Reading the Melon layout and preprocessing it build millions of small containers (dicts, lists, tuples,
``Song`` and ``Playlist`` records) that live on. CPython starts a full collection whenever the objects that
survived collection grow by a quarter since the last one, and a full collection walks every live container:
at real size (707,989 songs) the reader paid 16 of them (5 s of 13 s CPU) and preprocessing 3 more (7 s of
18 s). None of these objects forms a reference cycle, so reference counting frees all they leave behind and
the collector finds nothing; pausing it changes what is freed only by when (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore the previous state after (nesting is safe)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
