"""What a task may ask of a DataModule (:class:`occam_l2r.data.base.BaseDataModule`): a task run
with a DataModule it cannot read stops with one message naming the DataModule it needs."""

from __future__ import annotations

import pytest

from occam_l2r.data.base import BaseDataModule, WrongDataModuleError
from occam_l2r.data.caption_datamodule import CaptionDataModule
from occam_l2r.data.logits_datamodule import LogitsDataModule
from occam_l2r.errors import UserError


def test_of_returns_a_datamodule_of_the_needed_kind():
    dm = LogitsDataModule.__new__(LogitsDataModule)  # no files needed to check the type
    assert BaseDataModule.of(dm, "SomeTask") is dm
    assert LogitsDataModule.of(dm, "SomeTask") is dm


def test_a_task_with_the_wrong_datamodule_names_the_one_it_needs():
    dm = LogitsDataModule.__new__(LogitsDataModule)
    with pytest.raises(WrongDataModuleError) as err:
        CaptionDataModule.of(dm, "ClipTrainTask")
    message = str(err.value)
    assert isinstance(err.value, UserError)  # one message, exit 3 through the CLI
    assert "ClipTrainTask needs a CaptionDataModule" in message
    assert "occam_l2r.data.caption_datamodule.CaptionDataModule" in message
    assert "not LogitsDataModule" in message
