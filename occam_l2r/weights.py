"""Pretrained weights: find them locally, or fail fast with a message that says what to do.

Every model of the toolkit is resolved *before* anything is loaded or any process is spawned,
and a missing one raises the single :class:`WeightsNotFoundError`, naming the weights and the
ways to provide them, within seconds (nothing waits on network time-outs):

- timm / open_clip weights (:func:`require_hub_files`): hub libraries retry an unreachable hub
  for about a minute per file, so the local Hugging Face cache is checked first; when the files
  are absent the check fails at once (``HF_HUB_OFFLINE=1``) or tests in a few seconds whether the
  hub is reachable at all;
- transformers models of the segmenters, GroundingDINO and OWLv2 (:func:`resolve_hf_model`):
  a local ``save_pretrained`` folder, or a model id already in the Hugging Face cache (asked with
  ``local_files_only=True``), or downloaded once when the config says ``download: true``;
- SAM checkpoints (:func:`resolve_sam_checkpoint`): a file, with the official address of the
  missing one in the message.

Weight files are untrusted input: :func:`load_state_dict_file` reads them with
``torch.load(weights_only=True)`` (tensors and plain containers only, never arbitrary Python
objects) and names the file when it cannot; :func:`weights_only_failure` tells a refused file
from a damaged one (for this module and the checkpoint loader of ``occam_l2r.tasks``).
"""

from __future__ import annotations

import os
import pickle
import socket
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: official download addresses of the SAM checkpoints (segment-anything's README)
SAM_CHECKPOINT_URLS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


class WeightsError(RuntimeError):
    """Pretrained weights cannot be used: missing (:class:`WeightsNotFoundError`) or unreadable
    (:class:`WeightsFileError`). The message names the weights and what to do; the command line
    prints it as one message (:data:`occam_l2r.cli.KNOWN_ERRORS`)."""


class WeightsNotFoundError(FileNotFoundError, WeightsError):
    """Pretrained weights named in a config are neither local, cached, nor downloadable from here.

    A :class:`FileNotFoundError` (a file or cache entry is missing) and a :class:`RuntimeError`.
    """


class WeightsFileError(WeightsError, ValueError):
    """A weights file exists but cannot be loaded: truncated, not a checkpoint, holding Python
    objects that ``torch.load(weights_only=True)`` refuses, or not fitting the architecture."""


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hf_cache_dir(cache_dir: str | None = None) -> Path:
    """The Hugging Face hub cache used for look-ups (``cache_dir``, else ``$HF_HUB_CACHE``/``$HF_HOME``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


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
    reason = (
        "HF_HUB_OFFLINE is set"
        if _offline()
        else "the Hugging Face hub is not reachable from this machine"
    )
    raise WeightsNotFoundError(
        f"pretrained weights {what!r} (hub repo {repo_id}, file {' or '.join(filenames)}) are not in the local "
        f"cache {hf_cache_dir()} and {reason}. Either copy the repo into that cache (e.g. "
        f"`huggingface-cli download {repo_id}` on a machine with internet, then copy ~/.cache/huggingface), "
        f"or download the weights file and set `{local_option}` to its local path."
    )


def resolve_hf_model(model: str, cache_dir: str | None = None, download: bool = False) -> Path:
    """Return a local folder holding the Hugging Face model ``model``.

    Args:
        model: a hub model id (``IDEA-Research/grounding-dino-base``) or a local folder written
            by ``save_pretrained``.
        cache_dir: hub cache to look in (default: the standard Hugging Face cache).
        download: fetch the model from the hub when it is not cached (needs internet; done once,
            in the launching process, before any worker starts).

    Raises:
        WeightsNotFoundError: the folder does not exist, or the model id is not in the cache and
            ``download`` is off (or the download failed).
    """
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise WeightsNotFoundError(
                f"model folder {local} has no config.json; it must be written by "
                "`model.save_pretrained(folder)` and `processor.save_pretrained(folder)`."
            )
        return local
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        raise WeightsNotFoundError(
            f"model folder {local} does not exist; fix `model:` in the config."
        )
    from huggingface_hub import snapshot_download

    cache = hf_cache_dir(cache_dir)
    try:
        return Path(snapshot_download(model, cache_dir=str(cache), local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, HFValidationError, ...
        if not download:
            raise WeightsNotFoundError(
                f"pretrained model {model!r} is not in the Hugging Face cache {cache} ({type(err).__name__}). "
                f"On a machine with internet run `hf download {model}` (or `huggingface-cli download {model}`) "
                f"and copy {cache}/models--{model.replace('/', '--')} to this cache; or save it with "
                f"save_pretrained into a folder and set `model: /that/folder` in the config; or set "
                "`download: true` on a node with internet."
            ) from err
    try:
        return Path(snapshot_download(model, cache_dir=str(cache)))
    except Exception as err:
        raise WeightsNotFoundError(
            f"could not download {model!r} into {cache}: {err}. Download it elsewhere "
            f"(`hf download {model}`) and copy it into that cache, or point `model:` at a local folder."
        ) from err


def sam_checkpoint_hint(path: Path, model_type: str) -> str:
    """Where to get the SAM checkpoint ``path`` of ``model_type`` (for error messages)."""
    url = SAM_CHECKPOINT_URLS.get(model_type)
    where = (
        f"Download {url} (e.g. `wget -P {path.parent} {url}`) and set `checkpoint:` to the file"
        if url
        else "Write it with torch.save(sam.state_dict(), path)"
    )
    return (
        f"{where}; checkpoints are sam_vit_h_4b8939.pth (vit_h), sam_vit_l_0b3195.pth (vit_l), "
        "sam_vit_b_01ec64.pth (vit_b)."
    )


def resolve_sam_checkpoint(checkpoint: str, model_type: str) -> Path:
    """Return the path of a SAM checkpoint file, or say where to get it.

    Raises:
        WeightsNotFoundError: ``checkpoint`` is not a file.
    """
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    raise WeightsNotFoundError(
        f"SAM checkpoint {path} ({model_type}) not found. {sam_checkpoint_hint(path, model_type)}"
    )


def weights_only_failure(err: BaseException) -> tuple[bool, str]:
    """Why ``torch.load(weights_only=True)`` failed, for a message that names the file.

    Returns:
        Whether the file was *refused* (its pickle asks for a Python object other than tensors
        and plain containers: ``Unsupported global``), and the reason in one line of at most 200
        characters, without torch's advice to retry with the check turned off (a file that
        holds code is never loaded that way here).
    """
    text = " ".join(str(err).split())
    refused = isinstance(err, pickle.UnpicklingError) and (
        "Unsupported global" in text or "GLOBAL" in text
    )
    if "Weights only load failed" in text:
        starts = [i for i in (text.find("Unsupported"), text.find("Trying to load")) if i >= 0]
        text = text[min(starts) :] if starts else "the unpickler refused the file"
        text = text.split(" Check the documentation of torch.load")[0]
    return refused, text[:200]


def load_state_dict_file(path: str | Path, what: str, hint: str) -> dict[str, Any]:
    """``torch.load(path, map_location="cpu", weights_only=True)``, naming the file on failure.

    Args:
        path: the weights file (a ``torch.save`` of a state dict).
        what: the weights' name for the message (``SAM checkpoint (vit_h)``).
        hint: how to get a good file (appended to the message).

    Raises:
        WeightsNotFoundError: ``path`` is not a file.
        WeightsFileError: the file is empty, truncated, not a torch file, holds objects other
            than tensors and plain containers, or is not a dict of tensors.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"{what} {path} not found. {hint}")
    size = path.stat().st_size
    unreadable = f"{what} {path} ({size} bytes) is not a readable torch checkpoint (truncated or "
    try:
        if size == 0:
            raise EOFError("the file is empty")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused, text = weights_only_failure(err)
        if not refused:
            raise WeightsFileError(
                f"{unreadable}corrupt?): UnpicklingError: {text}. {hint}"
            ) from err
        raise WeightsFileError(
            f"{what} {path} was refused by torch.load(weights_only=True): it holds Python "
            f"objects other than tensors ({text}). Only load weights from "
            f"a source you trust, saved as a plain state dict. {hint}"
        ) from err
    except (OSError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise WeightsFileError(
            f"{unreadable}interrupted download?): {type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}. {hint}"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(
            f"{what} {path} holds a {type(state).__name__}, not a state dict of tensors. {hint}"
        )
    return state
