"""The embedded benchmark's digit selection is cached on disk: a second dataset (another root,
another process) reuses it; the file is keyed and versioned, and a damaged one is made again."""

from __future__ import annotations

import numpy as np
import pytest

from occam_l2r.data.datasets import synthetic as S
from tests.conftest import TINY


@pytest.fixture
def fits(tmp_path, monkeypatch):
    """A fresh data dir and a counted (cheap, fake) selection; the in-process memo is cleared
    before and after, so that no other test sees the fake."""
    monkeypatch.setenv("OCCAM_L2R_DATA", str(tmp_path / "data"))
    calls = []

    def select(x, y):
        calls.append(len(y))
        return np.arange(len(y)) % 3 != 0  # every class keeps exemplars

    monkeypatch.setattr(S, "_select_digits", select)
    S._digits.cache_clear()
    yield calls
    S._digits.cache_clear()


def test_second_dataset_reuses_the_cached_selection(tmp_path, fits):
    S.SyntheticSpurious(root=str(tmp_path / "a"), **TINY).prepare()
    assert fits == [1797]
    (cached,) = (tmp_path / "data" / "synthetic" / "digits").glob("*.npz")
    assert cached.name.startswith(f"digits-v{S.DIGITS_CACHE_VERSION}-")
    first = S._digits()
    S._digits.cache_clear()  # as a new process: only the file remains
    S.SyntheticSpurious(root=str(tmp_path / "b"), rho=0.5, **TINY).prepare()
    assert fits == [1797]  # no second fit
    for a, b in zip(first, S._digits(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert len(first[0]) == 1797 - 599
    a, b = (sorted((tmp_path / r / "images").rglob("*.png")) for r in ("a", "b"))
    assert len(a) == len(b) == 4 * (6 + 2 + 3 * 2)


def test_damaged_or_other_key_is_made_again(fits, monkeypatch):
    S._digits()
    (cached,) = (S.digits_cache_dir()).glob("*.npz")
    cached.write_bytes(b"not a zip")
    S._digits.cache_clear()
    S._digits()
    assert len(fits) == 2 and np.load(cached)["keep"].sum() == 1797 - 599  # rewritten

    monkeypatch.setattr(S, "DIGIT_RULE", {**S.DIGIT_RULE, "min_proba": 0.8})  # another rule
    S._digits.cache_clear()
    S._digits()
    assert len(fits) == 3 and len(list(S.digits_cache_dir().glob("*.npz"))) == 2
