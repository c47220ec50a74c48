"""Fused pairs as typed values (:mod:`occam_l2r.fusion.pairs`): their text in files, their display,
and the one default-pair rule that ``fuse``, the pipeline and the zero-shot task share."""

from __future__ import annotations

import pytest

from occam_l2r.fusion.pairs import Pair, default_pairs


def test_pair_text_round_trips_and_displays():
    pair, ens = Pair("FG_C", "BG_S"), Pair.of_ensemble("FULL")
    assert (pair.name, str(ens)) == ("FG_C+BG_S", "FULLx2")  # the names of results.jsonl
    assert (pair.display(), ens.display()) == ("FG_C ⊕ BG_S", "FULL × 2")
    assert ens.input_names == ("FULL", "FULL (next seed)") and tuple(pair) == ("FG_C", "BG_S")
    for p in (pair, ens):
        assert Pair.parse(p.name) == p
    for bad in ("FG_C", "A+B+C", "+B", "x2"):
        with pytest.raises(ValueError, match="names no fused pair"):
            Pair.parse(bad)


def test_default_pairs_put_fg_with_full_first():
    """The pipeline's synthetic summary lists FG_C ⊕ FULL before FG_C ⊕ BG_S; the order of the
    views given does not change that."""
    want = [Pair("FG_C", "FULL"), Pair("FG_C", "BG_S")]
    assert default_pairs(["FULL", "FG_C", "BG_S"]) == want
    assert default_pairs(["BG_S", "FG_C", "FULL", "FG_M"]) == want
    assert default_pairs(["FULL", "BG_S"]) == []
