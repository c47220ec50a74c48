"""Verbs call typed objects (issue 15, item 3): no verb drives another through argv or a config
file written for the call.

Two kinds of check: a scan of ``occam_l2r/commands/*.py`` (no call of a verb's argv entry
``main``; no argv list, string or freshly written file handed to a verb's runner), proven able to
fail on the old code; and the calls the pipeline and ``classify`` really make, caught with the
runner replaced: a parsed config object whose fields the caller set.
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from jsonargparse import Namespace

from occam_l2r.cli import main
from occam_l2r.errors import UserError
from tests.conftest import TINY_FG

COMMANDS = Path(__file__).parents[1] / "occam_l2r" / "commands"
#: what runs a verb: a LightningCLI subclass (``*CLI``) or the runners taking a config object
RUNNERS = {"run", "run_segment"}
#: the modules whose ``main`` is a verb's argv entry
VERB_MODULES = ("occam_l2r.commands", "occam_l2r.cli")


def _callee(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)


def _is_runner(name: str | None) -> bool:
    return name is not None and (name in RUNNERS or name.endswith("CLI"))


def _written_names(function: ast.AST) -> set[str]:
    """Names of the paths a function writes: ``atomic_write_text(text, p)``, ``p.write_text``,
    ``open(p, "w")``, ``yaml.safe_dump(cfg, f)``."""
    names: set[str] = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        targets: list[ast.AST] = []
        if callee == "atomic_write_text" and len(node.args) > 1:
            targets.append(node.args[1])
        elif callee in ("write_text", "write_bytes") and isinstance(node.func, ast.Attribute):
            targets.append(node.func.value)
        elif callee == "open" and node.args:
            targets.append(node.args[0])
        elif callee in ("safe_dump", "dump") and len(node.args) > 1:
            targets.append(node.args[1])
        names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _argv_like(arg: ast.AST) -> bool:
    """A list, tuple, f-string or string written in place: argv, or a config file's name."""
    is_str = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    return is_str or isinstance(arg, (ast.List, ast.ListComp, ast.Tuple, ast.JoinedStr))


def violations(source: str, where: str) -> list[str]:
    """What in ``source`` drives a verb through argv or a config file written for the call."""
    found = []
    tree = ast.parse(source)
    entries = set()  # the names a verb's `main` is imported under
    for node in ast.walk(tree):  # a verb's `main` takes argv: only occam_l2r.cli calls it
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(VERB_MODULES):
            for alias in (a for a in node.names if a.name == "main"):
                entries.add(alias.asname or alias.name)
                found.append(f"{where}:{node.lineno}: imports {node.module}.main (argv entry)")
        if isinstance(node, ast.Call) and _callee(node) == "main":
            found.append(f"{where}:{node.lineno}: calls a main (argv entry)")
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        written = _written_names(function)
        for node in ast.walk(function):
            runner = _callee(node) if isinstance(node, ast.Call) else None
            if not (_is_runner(runner) or runner in entries):
                continue
            at = f"{where}:{node.lineno} {_callee(node)}(...)"
            args = [*node.args, *(k.value for k in node.keywords)]
            if _callee(node) == "run" and node.args:  # run("fit", config): the subcommand
                args.remove(node.args[0])
            for arg in args:
                if _argv_like(arg):
                    found.append(f"{at}: argv or a string handed to a verb")
                used = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)}
                if used & written:
                    found.append(f"{at}: a file written here handed to a verb ({used & written})")
    return found


#: the shapes issue 15 removed, as they were written (commands/classify.py, commands/pipeline.py)
OLD = """
from occam_l2r.commands.segment import main as segment

def segment_images(config):
    cfg = segment_run_config(config)
    path = Path(config.output_dir) / "segment.yaml"
    atomic_write_text(yaml.safe_dump(cfg, sort_keys=False), path)
    summary = segment(["--config", str(path)])

def train_and_export(run, fit_args):
    cli = OccamCLI(args=["fit", *common, "--seed_everything", str(run.seed), *logger])
    OccamCLI(args=["predict", *common, "--ckpt_path", str(best)])

def written_then_run(config):
    path = Path("seg.yaml")
    path.write_text(yaml.safe_dump(config))
    run_segment(path)
    run_segment(str(path))
"""


def test_the_scan_catches_argv_and_written_configs() -> None:
    found = violations(OLD, "old")
    assert any("imports occam_l2r.commands.segment.main" in f for f in found), found
    assert len([f for f in found if "OccamCLI(...): argv or a string" in f]) == 2, found
    assert len([f for f in found if "segment(...): argv or a string" in f]) == 1, found
    assert len([f for f in found if "written here" in f]) == 3, found
    assert violations("def f(config):\n    run('fit', config)\n", "new") == []
    assert violations("def f():\n    run_segment('seg.yaml')\n", "x")


def test_commands_call_verbs_with_objects() -> None:
    found = [v for f in sorted(COMMANDS.glob("*.py")) for v in violations(f.read_text(), f.name)]
    assert not found, "\n".join(found)


def test_pipeline_fits_and_predicts_from_one_parsed_config(tmp_path: Path, monkeypatch) -> None:
    from occam_l2r.commands import lightning
    from occam_l2r.commands import pipeline as P

    calls: list[tuple[str, Namespace]] = []

    def fake_run(subcommand: str, config: Namespace) -> SimpleNamespace:
        calls.append((subcommand, config))
        best = SimpleNamespace(best_model_path=str(tmp_path / "best.ckpt"), last_model_path="")
        return SimpleNamespace(trainer=SimpleNamespace(checkpoint_callback=best))

    monkeypatch.setattr(lightning, "run", fake_run)
    monkeypatch.setattr(P, "_fuse", lambda *a: {})
    overlay = tmp_path / "bg.yaml"
    overlay.write_text("data:\n  init_args:\n    view: BG_S\n")
    exp = tmp_path / "exp"
    main(["pipeline", "--views.BG_S", f"[{TINY_FG}, {overlay}]", "--seeds", "[3]",
          "--experiment_dir", str(exp), "--fit_args", "[--trainer.max_epochs, '2']"])  # fmt: skip

    assert [c[0] for c in calls] == ["fit"]  # the fit predicts every split itself
    fit = calls[0][1]
    assert isinstance(fit, Namespace)
    assert fit.data.init_args.view == "BG_S"  # the overlay
    assert fit.trainer.max_epochs == 2  # the user's fit_args
    assert fit.seed_everything == 3 and fit.predict_after_fit is True
    logger = fit.trainer.logger.init_args
    assert (logger.save_dir, logger.name, logger.version) == (str(exp), "BG_S", "seed3")
    assert fit.model.init_args.logits_dir is None  # <run>/logits, the run folder's own

    run = P.plan_runs({"BG_S": str(TINY_FG)}, [0], exp)[0]
    no_logger = lightning.parse_config([TINY_FG], ["--trainer.logger", "false"])
    with pytest.raises(UserError, match="trainer.logger is False"):
        run.fit_config(no_logger)
    with pytest.raises(UserError, match="views: unknown view 'FG'"):
        P.plan_runs({"FG": "fg.yaml"}, [0], exp)


def test_classify_hands_segment_the_config_object_it_records(tmp_path: Path, monkeypatch) -> None:
    from occam_l2r.classify.config import ClassifyConfig
    from occam_l2r.commands import classify as C
    from occam_l2r.commands import segment

    seen: list[object] = []
    monkeypatch.setattr(segment, "run_segment", lambda config: seen.append(config))  # rank > 0
    seg = tmp_path / "seg.yaml"
    seg.write_text(yaml.safe_dump({"model": {"segmenter": {"class_path": "x.Y"}},
                                   "data": {"splits": ["val"]}}))  # fmt: skip
    out = tmp_path / "out"
    config = ClassifyConfig(images=str(tmp_path / "imgs"), output_dir=str(out), checkpoints={},
                            fusion_dir=str(tmp_path / "fusion"), segment_config=str(seg))  # fmt: skip
    assert C.classify(config) is None  # what a rank > 0 returns
    assert len(seen) == 1 and isinstance(seen[0], dict)
    assert seen[0] == C.segment_run_config(config)
    assert seen[0]["model"]["store"] == str(out.absolute() / "segmentations")
    assert yaml.safe_load((out / "segment.yaml").read_text()) == seen[0]  # the record
