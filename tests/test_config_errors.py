"""Config mistakes on the command line: one message first on stderr, exit status 3, no traceback.

A misspelt key in a config file (``fit`` and the typed verb ``fuse``) used to print ~70 lines of
usage before the error; a ``fuse`` pair naming a view without runs printed a traceback. Each is
now one ``occam_l2r VERB: error:`` line naming the key (and where it is) and the fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.commands import parse_error_message
from occam_l2r.fusion.config import SweepConfig, SweepConfigError
from tests.test_errors import TINY_FIT, assert_one_message, run_cli


def _first_line(proc) -> str:
    return proc.stderr.lstrip().splitlines()[0]


def cli_in_process(
    args: list, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> subprocess.CompletedProcess:
    """``python -m occam_l2r ARGS`` in this process (``main()`` reads ``sys.argv``)."""
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", *map(str, args)])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.mark.parametrize(
    ("overlay", "needles"),
    [
        ({"trainer": {"max_epoch": 1}}, ["'trainer.max_epoch'", "spelling", "fit --help"]),
        (
            {"data": {"init_args": {"batch_sise": 2}}},
            ["'batch_sise'", "under data", "ViewDataModule", "spelling"],
        ),
    ],
)
def test_fit_config_typo_is_one_message_first(
    tmp_path: Path, overlay: dict, needles: list[str], monkeypatch, capsys
) -> None:
    conf = tmp_path / "typo.yaml"
    conf.write_text(yaml.safe_dump(overlay))
    args = ["fit", "--config", TINY_FIT, "--config", conf]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "fit", *needles)
    assert _first_line(proc) == line, proc.stderr  # the error comes first, no usage block
    assert "usage:" not in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_fuse_config_typo_and_unknown_pair_view(tmp_path: Path, monkeypatch, capsys) -> None:
    runs = {"FULL": ["r/FULL/s0"], "FG_C": ["r/FG_C/s0"]}
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"runs": runs, "ensemblez": ["FULL"]}))
    proc = cli_in_process(["fuse", "--config", typo], tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "fuse", "'ensemblez'", "spelling", "fuse --help")
    assert _first_line(proc) == line and "usage:" not in proc.stderr
    nested = tmp_path / "nested.yaml"
    nested.write_text(yaml.safe_dump({"runs": runs, "heads": {"max_epoch": 3}}))
    proc = cli_in_process(["fuse", "--config", nested], tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "fuse", "'max_epoch'", "under heads", "HeadConfig")
    assert _first_line(proc) == line
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump({"runs": runs, "pairs": [["FG_C", "FOO"]]}))
    proc = cli_in_process(["fuse", "--config", unknown], tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fuse", "'FOO'", "`runs` lists", "runs: {FOO: [...]}")


@pytest.mark.slow
def test_config_typo_in_a_subprocess(tmp_path: Path) -> None:
    conf = tmp_path / "typo.yaml"
    conf.write_text(yaml.safe_dump({"data": {"init_args": {"batch_sise": 2}}}))
    proc = run_cli(["fit", "--config", TINY_FIT, "--config", conf], tmp_path)
    line = assert_one_message(proc, "fit", "'batch_sise'", "under data")
    assert _first_line(proc) == line and "usage:" not in proc.stderr


def test_sweep_config_errors_stay_value_errors() -> None:
    with pytest.raises(SweepConfigError, match="'FOO'") as info:
        SweepConfig(runs={"FULL": ["a"]}, pairs=[("FULL", "FOO")])
    assert isinstance(info.value, ValueError)  # code that catches ValueError keeps working


def test_parse_error_message_wrong_type() -> None:
    message = (
        'Parser key "trainer.max_epochs":\n  Does not validate against any of the Union subtypes\n'
        "  Errors:\n    - Expected a <class 'int'>\n    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'str'>\n  Given value: abc"
    )
    line = parse_error_message(message, "fit")
    assert line.startswith("trainer.max_epochs: invalid value 'abc' (expected int or NoneType)")
    assert "\n" not in line
    nested = (
        'Parser key "data":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
        "    - Problem with given class_path 'occam_l2r.data.datamodule.ViewDataModule':\n"
        '        Parser key "batch_size":\n'
        "          Not of type PositiveInt: -4 does not conform to restriction v>0\n"
        "    - Expected a <class 'NoneType'>\n"
        "  Given value: NestedArg(key='batch_size', val='-4')"
    )
    assert parse_error_message(nested, "fit").startswith(
        "data -> batch_size: Not of type PositiveInt: -4 does not conform to restriction v>0;"
    )


def test_segment_config_typo_is_one_message_first(tmp_path: Path, monkeypatch, capsys) -> None:
    conf = tmp_path / "typo.yaml"
    conf.write_text(yaml.safe_dump({"model": {"stor": "x"}}))
    segment = Path(__file__).parents[1] / "configs" / "segment" / "waterbirds_sam_auto.yaml"
    args = ["segment", "--config", segment, "--config", conf]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "segment", "'stor'", "segment --help")
    assert _first_line(proc) == line and "usage:" not in proc.stderr
