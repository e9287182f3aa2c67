"""Fetching Debian packages without installing them: ``apt-get download`` then ``dpkg -x``.

Downloads are cached (one ``.deb`` per package in the cache folder) and unpacked once into
``<unpack_root>/<package>/``; a ``.unpacked`` marker says an unpack completed. ``apt-get update`` runs
at most once per process, and only when a package is not in the cache yet.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

_UPDATED = False


class PackageError(RuntimeError):
    """A package could not be fetched or unpacked; the message names it."""


def cached_deb(cache: Path, package: str) -> Path | None:
    """The cached ``.deb`` of ``package`` (the newest name when several versions are cached)."""
    found = sorted(Path(cache).glob(f"{package}_*.deb"))
    return found[-1] if found else None


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def download(package: str, cache: Path) -> Path:
    """The package's ``.deb`` in ``cache``, fetched with ``apt-get download`` when not cached yet."""
    global _UPDATED
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    deb = cached_deb(cache, package)
    if deb is not None:
        return deb
    if shutil.which("apt-get") is None:
        raise PackageError(f"{package}: not in {cache} and apt-get is not available to download it")
    if not _UPDATED:
        logger.info("apt-get update")
        done = _run(["apt-get", "update", "-q"])
        if done.returncode != 0:
            logger.warning("apt-get update failed (%s); trying the existing package lists", done.stderr.strip()[-200:])
        _UPDATED = True
    logger.info("apt-get download %s", package)
    done = _run(["apt-get", "download", package], cwd=cache)
    deb = cached_deb(cache, package)
    if done.returncode != 0 or deb is None:
        raise PackageError(f"{package}: apt-get download failed: {done.stderr.strip()[-300:]}")
    return deb


def unpack(deb: Path, root: Path) -> Path:
    """Unpack ``deb`` with ``dpkg -x`` into ``root/<package>`` (once) and return that folder."""
    package = deb.name.split("_", 1)[0]
    target = Path(root) / package
    marker = target / ".unpacked"
    if marker.is_file() and marker.read_text() == deb.name:
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    done = _run(["dpkg", "-x", str(deb), str(target)])
    if done.returncode != 0:
        raise PackageError(f"{deb}: dpkg -x failed: {done.stderr.strip()[-300:]}")
    marker.write_text(deb.name)
    return target


def fetch(package: str, cache: Path, root: Path) -> tuple[Path, str]:
    """Download (cached) and unpack one package; returns its folder and the ``.deb`` file name."""
    deb = download(package, cache)
    return unpack(deb, root), deb.name
