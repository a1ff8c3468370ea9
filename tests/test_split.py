"""Cutting items into mini-batches by count."""

import pytest

from parajob import _core


@pytest.mark.parametrize("n,size", [(0, 3), (1, 1), (10, 3), (10, 10), (10, 11), (100_001, 7)])
def test_every_item_in_exactly_one_batch_in_order(n: int, size: int) -> None:
    ranges = _core.split_by_count(n, size)
    covered = [i for begin, end in ranges.tolist() for i in range(begin, end)]
    assert covered == list(range(n))
    assert all(end - begin == size for begin, end in ranges[:-1].tolist())
    if n:
        last = ranges[-1]
        assert 1 <= last[1] - last[0] <= size  # the last batch may be short, never empty


def test_zero_batch_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _core.split_by_count(10, 0)
