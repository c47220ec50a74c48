"""Locating pretrained weights without touching the network, failing fast when they are missing.

Segmentation runs on GPU nodes that often have no internet. Every model is therefore resolved
*before* anything is loaded or any process is spawned: a Hugging Face model (GroundingDINO,
OWLv2) must be a local folder written by ``save_pretrained`` or already sit in the Hugging Face
cache; a SAM checkpoint must be a file. When it is not there, :class:`MissingWeightsError` says
which model or checkpoint is missing and where to put it, within a fraction of a second (the hub
is asked with ``local_files_only=True``; nothing waits on network time-outs).
"""

from __future__ import annotations

from pathlib import Path

#: official download addresses of the SAM checkpoints (segment-anything's README)
SAM_CHECKPOINT_URLS: dict[str, str] = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights named in a config are neither a local path nor in the cache."""


def hf_cache_dir(cache_dir: str | None = None) -> Path:
    """The Hugging Face hub cache used for look-ups (``cache_dir``, else ``$HF_HUB_CACHE``/``$HF_HOME``)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_hf_model(model: str, cache_dir: str | None = None, download: bool = False) -> Path:
    """Return a local folder holding the Hugging Face model ``model``.

    Args:
        model: a hub model id (``IDEA-Research/grounding-dino-base``) or a local folder written
            by ``save_pretrained``.
        cache_dir: hub cache to look in (default: the standard Hugging Face cache).
        download: fetch the model from the hub when it is not cached (needs internet; done once,
            in the launching process, before any worker starts).

    Raises:
        MissingWeightsError: the folder does not exist, or the model id is not in the cache and
            ``download`` is off (or the download failed).
    """
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise MissingWeightsError(
                f"model folder {local} has no config.json; it must be written by "
                "`model.save_pretrained(folder)` and `processor.save_pretrained(folder)`."
            )
        return local
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        raise MissingWeightsError(
            f"model folder {local} does not exist; fix `model:` in the config."
        )
    from huggingface_hub import snapshot_download

    cache = hf_cache_dir(cache_dir)
    try:
        return Path(snapshot_download(model, cache_dir=str(cache), local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, HFValidationError, ...
        if not download:
            raise MissingWeightsError(
                f"pretrained model {model!r} is not in the Hugging Face cache {cache} ({type(err).__name__}). "
                f"On a machine with internet run `hf download {model}` (or `huggingface-cli download {model}`) "
                f"and copy {cache}/models--{model.replace('/', '--')} to this cache; or save it with "
                f"save_pretrained into a folder and set `model: /that/folder` in the config; or set "
                "`download: true` on a node with internet."
            ) from err
    try:
        return Path(snapshot_download(model, cache_dir=str(cache)))
    except Exception as err:
        raise MissingWeightsError(
            f"could not download {model!r} into {cache}: {err}. Download it elsewhere "
            f"(`hf download {model}`) and copy it into that cache, or point `model:` at a local folder."
        ) from err


def resolve_sam_checkpoint(checkpoint: str, model_type: str) -> Path:
    """Return the path of a SAM checkpoint file, or say where to get it.

    Raises:
        MissingWeightsError: ``checkpoint`` is not a file.
    """
    path = Path(checkpoint).expanduser()
    if path.is_file():
        return path
    url = SAM_CHECKPOINT_URLS.get(model_type)
    where = (
        f"Download {url} (e.g. `wget -P {path.parent} {url}`) and set `checkpoint:` to the file"
        if url
        else "Write it with torch.save(sam.state_dict(), path)"
    )
    raise MissingWeightsError(
        f"SAM checkpoint {path} ({model_type}) not found. {where}; checkpoints are "
        "sam_vit_h_4b8939.pth (vit_h), sam_vit_l_0b3195.pth (vit_l), sam_vit_b_01ec64.pth (vit_b)."
    )
