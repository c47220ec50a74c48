"""The open_clip model configs that ship with occam_l2r, registered with open_clip on demand.

open_clip finds model architectures by name in its registry of JSON configs. The configs under
``models/clip_configs/`` (tiny towers for the tests and the embedded CLIP) are added with
:func:`register_configs`; a user's own config file or folder is added with the same function.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "clip_configs"
_registered: set[str] = set()


def register_configs(path: str | Path = CONFIG_DIR) -> None:
    """Add the open_clip model config(s) at ``path`` (a ``.json`` file or a folder of them)."""
    import open_clip

    path = Path(path)
    key = str(path.resolve())
    if key in _registered:
        return
    if not path.exists():
        raise FileNotFoundError(f"open_clip model config {path} does not exist")
    open_clip.add_model_config(path)
    _registered.add(key)
