"""kernels.records: records cross the jit boundary as plain tuples and are read by name inside."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest
from numba.core import errors

from kernels.records import as_record, plain


class Mat(NamedTuple):
    a: np.ndarray
    n: int
    flag: bool


class Pack(NamedTuple):
    v: np.ndarray
    pair: tuple[Mat, Mat]  # heterogeneous when the arrays' dtypes differ
    many: tuple[Mat, ...]
    one: Mat
    x: float


@numba.njit(cache=False)
def _read(t):
    p = as_record(Pack, t)
    s = p.v.sum() + p.pair[0].a.sum() * p.pair[1].n + p.one.n + p.x + p.many[1].n
    if p.pair[1].flag:
        s += 100.0
    p.one.a[0] = 7.0  # the record's arrays are the caller's arrays
    return s


@numba.njit(cache=False)
def _three_fields(t):
    return as_record(Mat, t).n


def _pack() -> Pack:
    m = Mat(np.zeros(1), 4, False)
    return Pack(np.ones(3), (Mat(np.ones(2), 2, False), Mat(np.ones(2, np.float32), 5, True)), (m, m),
                Mat(np.zeros(4), 1, False), 0.5)


def test_plain_tuples_read_by_name():
    p = _pack()
    t = plain(p)
    assert type(t) is tuple and type(t[1][0]) is tuple and t[0] is p.v
    assert _read(t) == 3 + 2 * 5 + 1 + 0.5 + 4 + 100
    assert p.one.a[0] == 7.0


def test_wrong_field_count_is_a_typing_error():
    with pytest.raises(errors.TypingError, match="Mat has 3 fields"):
        _three_fields((np.zeros(1), 2))
