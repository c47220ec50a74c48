"""Pretrained weights: find them locally or fail fast with a message that says what to do.

Hub libraries (timm, open_clip, transformers) retry an unreachable hub for about a minute per
file. Before they are asked for weights, :func:`require_hub_files` checks the local Hugging Face
cache; when the files are absent it either fails at once (``HF_HUB_OFFLINE=1``) or checks in a
few seconds whether the hub is reachable at all, and fails with the names of the weights and the
ways to provide them (a populated cache, or a local checkpoint path in the config).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from urllib.parse import urlparse


class WeightsNotFoundError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable from here."""


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection within ``timeout`` seconds."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def cached_hub_file(repo_id: str, filenames: Sequence[str]) -> str | None:
    """Path of the first of ``filenames`` of ``repo_id`` in the local hub cache, else ``None``."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def require_hub_files(repo_id: str, filenames: Sequence[str], what: str, local_option: str) -> None:
    """Raise :class:`WeightsNotFoundError` quickly unless ``repo_id`` can be loaded.

    Args:
        repo_id: the hub repository (``timm/convnextv2_base.fcmae_ft_in1k``).
        filenames: weight files to look for in the cache (any one suffices).
        what: the weights' name as the user wrote it in the config.
        local_option: the config key that accepts a local file or folder instead.
    """
    if cached_hub_file(repo_id, filenames) is not None:
        return
    if not _offline() and hub_reachable():
        return
    from huggingface_hub import constants

    reason = (
        "HF_HUB_OFFLINE is set"
        if _offline()
        else "the Hugging Face hub is not reachable from this machine"
    )
    raise WeightsNotFoundError(
        f"pretrained weights {what!r} (hub repo {repo_id}, file {' or '.join(filenames)}) are not in the local "
        f"cache {constants.HF_HUB_CACHE} and {reason}. Either copy the repo into that cache (e.g. "
        f"`huggingface-cli download {repo_id}` on a machine with internet, then copy ~/.cache/huggingface), "
        f"or download the weights file and set `{local_option}` to its local path."
    )
