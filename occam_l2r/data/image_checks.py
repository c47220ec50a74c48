"""Find the unreadable images among many files: each decoded once, in parallel, cached.

:func:`scan_images` decodes every file with :func:`occam_l2r.data.records.image_check` and gives
the unreadable ones (missing, empty, not an image, corrupt or truncated, a 16-bit image of
ambiguous depth) with their reasons and the decoded size of the others, caching each file's
result by size and modification time in :func:`check_cache_path`; :func:`check_images` gives the
unreadable ones only. The DataModule (before every run, whatever ``data.on_unreadable``) and
``python -m occam_l2r check`` use it; the sizes feed the size rule of a usable image
(:func:`occam_l2r.data.records.size_mismatch`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL

from occam_l2r.data.records import RecordDataset, image_check

log = logging.getLogger(__name__)

#: version of the reading rules; cached image checks of another version are decoded again
CHECK_VERSION = f"read_image-3/pillow-{PIL.__version__}"


def check_cache_path(dataset: RecordDataset) -> Path:
    """The file caching :func:`check_images` results of ``dataset`` (one per dataset root).

    ``$OCCAM_L2R_CACHE/image_checks/`` (default ``~/.cache/occam_l2r/image_checks/``), named by
    the dataset's name and a hash of its class and absolute root.
    """
    base = Path(os.environ.get("OCCAM_L2R_CACHE", Path.home() / ".cache" / "occam_l2r"))
    key = f"{type(dataset).__module__}.{type(dataset).__qualname__}|{Path(dataset.root).resolve()}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    return base / "image_checks" / f"{dataset.name}-{digest}.json"


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _load_cache(cache: Path | None) -> dict[str, list[Any]]:
    if cache is None or not cache.is_file():
        return {}
    try:
        data = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("reader") != CHECK_VERSION:
        return {}
    return dict(data.get("files", {}))


def _save_cache(cache: Path, files: dict[str, list[Any]]) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"reader": CHECK_VERSION, "files": files}))
        tmp.replace(cache)
    except OSError as err:  # a read-only home: the check still holds for this run
        log.warning("cannot write the image check cache %s (%s)", cache, err)


@dataclass
class ImageScan:
    """What :func:`scan_images` found: ``bad`` (image id -> why it cannot be read, in the order of
    the paths) and ``sizes`` (image id -> decoded ``(height, width)`` of each readable image whose
    result is known; ``decode=False`` leaves out the files not decoded before)."""

    bad: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def scan_images(
    paths: Mapping[str, Path],
    workers: int = 1,
    cache: Path | None = None,
    decode: bool = True,
) -> ImageScan:
    """Decode every file of ``paths`` once, in parallel: the unreadable ones and the others' sizes.

    Args:
        paths: image id -> file.
        workers: decoding processes (``concurrent.futures.ProcessPoolExecutor``); 1 decodes here.
        cache: a JSON file remembering each file's result with its size and modification time;
            unchanged files are not decoded again (``None``: no cache).
        decode: ``False`` only looks for missing and empty files and the cached results, without
            decoding anything (cheap: one ``stat`` per file).
    """
    known = _load_cache(cache)
    bad: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    todo: dict[str, tuple[Path, tuple[int, int]]] = {}
    for image_id, path in paths.items():
        sig = _signature(Path(path))
        if sig is None:
            bad[image_id] = "file not found"
        elif sig[0] == 0:
            bad[image_id] = "empty file (0 bytes)"
        elif image_id in known and tuple(known[image_id][:2]) == sig:
            reason, size = known[image_id][2], known[image_id][3:5]
            if reason is not None:
                bad[image_id] = str(reason)
            elif len(size) == 2:
                sizes[image_id] = (int(size[0]), int(size[1]))
        elif decode:
            todo[image_id] = (Path(path), sig)
    if todo:
        log.info("decoding %d images with %d worker(s) to find unreadable ones", len(todo), workers)
        files = [str(path) for path, _ in todo.values()]
        if workers > 1 and len(files) > 1:
            chunk = max(1, min(256, len(files) // (4 * workers)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(image_check, files, chunksize=chunk))
        else:
            results = [image_check(f) for f in files]
        for (image_id, (_, sig)), (reason, size) in zip(todo.items(), results, strict=True):
            known[image_id] = [sig[0], sig[1], reason, *(size or ())]
            if reason is not None:
                bad[image_id] = reason
            elif size is not None:
                sizes[image_id] = size
        if cache is not None:
            _save_cache(cache, known)
    return ImageScan({i: bad[i] for i in paths if i in bad}, sizes)


def check_images(
    paths: Mapping[str, Path],
    workers: int = 1,
    cache: Path | None = None,
    decode: bool = True,
) -> dict[str, str]:
    """Find the unreadable images among ``paths``, fully decoding each once, in parallel.

    The arguments are :func:`scan_images`'s.

    Returns:
        ``{image id: reason}`` of every unreadable image, in the order of ``paths``.
    """
    return scan_images(paths, workers, cache, decode).bad
