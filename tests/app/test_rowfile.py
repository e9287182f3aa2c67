"""Row access to .npy files by positioned reads (app.rowfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.rowfile import NpyRows


@pytest.fixture()
def matrix(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.arange(7 * 5, dtype=np.float32).reshape(7, 5) / 3
    path = tmp_path / "m.npy"
    np.save(path, data)
    return path, data


def test_rows_match_np_load(matrix: tuple[Path, np.ndarray]) -> None:
    path, data = matrix
    rows = NpyRows(path)
    assert rows.shape == (7, 5) and rows.dtype == np.float32 and len(rows) == 7
    for i in range(-7, 7):
        np.testing.assert_array_equal(rows[i], data[i])
    np.testing.assert_array_equal(rows[np.int64(3)], data[3])
    np.testing.assert_array_equal(rows[2:5], data[2:5])
    np.testing.assert_array_equal(rows[::3], data[::3])
    np.testing.assert_array_equal(rows[[6, 0, 6]], data[[6, 0, 6]])
    assert rows[5:2].shape == (0, 5)


def test_out_of_range_row_is_an_index_error(matrix: tuple[Path, np.ndarray]) -> None:
    rows = NpyRows(matrix[0])
    with pytest.raises(IndexError, match="row 7 out of range"):
        rows[7]


def test_int32_and_format_2_headers(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.int32).reshape(3, 4)
    path = tmp_path / "v2.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, data, version=(2, 0))
    np.testing.assert_array_equal(NpyRows(path)[1], data[1])


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_bytes(b"not numpy at all"), "not a .npy array"),
        (lambda p: np.save(p, np.zeros(4, dtype=np.float32)), "2-D"),
        (lambda p: np.save(p, np.asfortranarray(np.ones((3, 2), dtype=np.float32))), "C-ordered"),
        (lambda p: (np.save(p, np.ones((50, 8), dtype=np.float32)), p.write_bytes(p.read_bytes()[:-40])), "truncated"),
    ],
)
def test_refuses_what_it_cannot_read_by_row(tmp_path: Path, write, match: str) -> None:
    path = tmp_path / "bad.npy"
    write(path)
    with pytest.raises(ValueError, match=match) as err:
        NpyRows(path)
    assert str(path) in str(err.value)
