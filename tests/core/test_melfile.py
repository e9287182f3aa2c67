"""The float16 table cast gives numpy's cast bit for bit; the readers keep their values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mugle_core.melfile import as_float32, load_mel, read_mel_window


def test_table_cast_is_numpys_cast_for_every_float16() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # zeros, subnormals, inf, NaN payloads
    got = as_float32(every)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), every.astype(np.float32).view(np.uint32))
    strided = every.reshape(256, 256)[3:40:2, 7:200]
    np.testing.assert_array_equal(as_float32(strided).view(np.uint32), strided.astype(np.float32).view(np.uint32))


def test_other_dtypes_cast_as_before() -> None:
    x = np.linspace(-80, 12, 12).reshape(3, 4)
    assert as_float32(x).dtype == np.float32 and np.array_equal(as_float32(x), x.astype(np.float32))
    y = x.astype(np.float32)
    assert as_float32(y) is y
    swapped = x.astype(">f2")  # not native: numpy's cast
    np.testing.assert_array_equal(as_float32(swapped), swapped.astype(np.float32))


def test_readers_give_the_stored_values(tmp_path: Path) -> None:
    mel = np.random.default_rng(0).normal(-30, 10, (48, 1876)).astype(np.float16)
    np.save(tmp_path / "m.npy", mel)
    full, status = load_mel(tmp_path / "m.npy")
    assert status == "ok" and full is not None
    np.testing.assert_array_equal(full, mel.astype(np.float32))
    part = read_mel_window(tmp_path / "m.npy", (8, 40), (625, 1250))
    assert part is not None
    np.testing.assert_array_equal(part, mel[8:40, 625:1250].astype(np.float32))
