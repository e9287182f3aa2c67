"""Random access to the rows of a 2-D ``.npy`` file by positioned reads, without loading or mapping it.

The per-model query vectors and neighbour lists are large (at 707,989 songs, 360 MB and 2 x 180 MB per
model) and a request reads one row of each. Memory-mapping them looked free, but when the files sit in
the page cache as large folios (as they do right after training writes them), touching one row maps the
whole folio into the process, and after a few thousand requests every file is counted as resident.
``os.pread`` copies just the row out of the page cache: about a microsecond, and the service's resident
memory stays what it allocated itself.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Read-ahead requests are issued in pieces: one advice over a whole file is capped by the kernel at a few
# MB, while 2 MB pieces bring a 1 GB set of files into the page cache in under a second.
_PREFETCH_CHUNK = 2 << 20


class NpyRows:
    """Read-only rows of a C-ordered 2-D ``.npy`` array.

    Indexing with an int gives one row (1-D), with a sequence of ints or a slice a 2-D array; every
    result is a fresh array. Raises :class:`ValueError` naming the file when it is not such an array or
    is shorter than its header says.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fh = open(self.path, "rb")  # noqa: SIM115 - kept open for the object's lifetime, closed by the finaliser
        weakref.finalize(self, fh.close)
        try:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{self.path}: not a .npy array ({exc})") from exc
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{self.path}: expected a C-ordered 2-D numeric array, got {dtype} {shape}")
        self._fd = fh.fileno()
        self._offset = fh.tell()
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.ndim = 2
        self._row_bytes = self.shape[1] * dtype.itemsize
        size = os.fstat(self._fd).st_size
        if size < self._offset + self.shape[0] * self._row_bytes:
            raise ValueError(f"{self.path}: truncated ({size} bytes, the header promises {self.shape} {dtype})")
        self._fh = fh

    def __len__(self) -> int:
        return self.shape[0]

    def prefetch(self) -> None:
        """Ask the kernel to read the whole array into the page cache, in the background.

        Without it, right after a deployment or a restart on a busy machine each row is a random read
        from disk, milliseconds apiece. The cached pages are the kernel's (shared, reclaimable), not this
        process's. A no-op where ``posix_fadvise`` does not exist.
        """
        advise = getattr(os, "posix_fadvise", None)
        if advise is None:
            return
        end = self._offset + self.shape[0] * self._row_bytes
        try:
            for start in range(0, end, _PREFETCH_CHUNK):
                advise(self._fd, start, min(_PREFETCH_CHUNK, end - start), os.POSIX_FADV_WILLNEED)
        except OSError as exc:  # advice only: serving works without it
            logger.warning("%s: read-ahead failed (%s)", self.path, exc)

    def _read(self, start: int, count: int) -> np.ndarray:
        data = os.pread(self._fd, count * self._row_bytes, self._offset + start * self._row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(count, self.shape[1])

    def raw(self, row: int, count: int | None = None) -> bytes:
        """The bytes of the first ``count`` values (all by default) of row ``row``, in the file's byte order.

        For a hot path that decodes a few values itself (``memoryview(...).cast``) instead of building an array.
        """
        if not 0 <= row < self.shape[0]:
            raise IndexError(f"{self.path}: row {row} out of range for {self.shape[0]} rows")
        width = self.shape[1] if count is None else max(0, min(count, self.shape[1]))
        return os.pread(self._fd, width * self.dtype.itemsize, self._offset + row * self._row_bytes)

    def __getitem__(self, key: int | slice | list[int] | np.ndarray) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            row = int(key)
            if not -n <= row < n:
                raise IndexError(f"{self.path}: row {row} out of range for {n} rows")
            return np.asarray(self._read(row % n, 1)[0])
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._read(start, max(0, stop - start))
            key = list(range(start, stop, step))
        rows = [int(r) for r in np.asarray(key).reshape(-1).tolist()]
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for i, r in enumerate(rows):
            out[i] = self[r]
        return out
