"""The embedded spurious-background benchmark: a real on-disk dataset generated offline.

Objects are scikit-learn's handwritten digits (class k = digit k), upscaled, tinted with a random
colour and pasted at a random position and size on crops of real photographs and textures that
ship inside scikit-image and scikit-learn (background kind b). In ``train`` and ``val`` class k
sits on background k with probability ``rho`` (1.0 by default; 0.97 as Spawrious), otherwise on a
uniformly drawn other background; ``test_id`` keeps the tie, ``test_shift`` permutes it (class k
on background k+1) and ``test_random`` draws the background uniformly.

Layout (like Waterbirds' ``metadata.csv`` + image folders)::

    <root>/metadata.csv          img_id, img_filename, y, class_name, split, place, place_name,
                                 mask_filename, x0, y0, x1, y1
    <root>/images/<split>/<class_name>/<img_id>.png
    <root>/masks/<split>/<class_name>/<img_id>.png     uint8, 0 = background, 1 = the object
    <root>/generator.json        the generator's parameters (written last: marks completion)

Generation is deterministic in ``seed`` and reused when ``generator.json`` matches. The
choice of unambiguous digit exemplars (a cross-validated logistic regression, seconds of CPU) is
cached once for every dataset in ``<data dir>/synthetic/digits/`` (:func:`_digits`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.records import Record, RecordDataset

log = logging.getLogger(__name__)

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: background kinds, in order; (source module, name)
BACKGROUNDS = [
    ("skimage", "grass"),
    ("skimage", "gravel"),
    ("skimage", "brick"),
    ("skimage", "moon"),
    ("skimage", "coffee"),
    ("skimage", "hubble_deep_field"),
    ("skimage", "immunohistochemistry"),
    ("skimage", "rocket"),
    ("skimage", "cell"),
    ("sklearn", "china.jpg"),
]
SPLITS = ("train", "val", "test_id", "test_shift", "test_random")


def default_data_dir() -> Path:
    """``$OCCAM_L2R_DATA`` or ``~/.cache/occam_l2r``."""
    return Path(os.environ.get("OCCAM_L2R_DATA", Path.home() / ".cache" / "occam_l2r"))


@cache
def _background_source(index: int) -> np.ndarray:
    module, name = BACKGROUNDS[index]
    if module == "skimage":
        import skimage.data

        img = getattr(skimage.data, name)()
    else:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3].astype(np.uint8)


#: the rule that picks the digit exemplars; with the library versions and the digits themselves
#: it keys the cached selection (:func:`_digits`)
DIGIT_RULE = {"C": 10.0, "max_iter": 5000, "cv": 5, "min_proba": 0.9}
#: version of the cached digit selection's file; bump it when :func:`_select_digits` changes
DIGITS_CACHE_VERSION = 1


def digits_cache_dir() -> Path:
    """Where the digit selection is cached: ``<data dir>/synthetic/digits``."""
    return default_data_dir() / "synthetic" / "digits"


def _select_digits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The mask of the exemplars that a cross-validated logistic regression on the raw pixels
    ``x`` gives their class ``y`` with probability >= ``DIGIT_RULE["min_proba"]`` (seconds of
    CPU: the result is cached on disk by :func:`_digits`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    clf = LogisticRegression(C=DIGIT_RULE["C"], max_iter=DIGIT_RULE["max_iter"])
    proba = cross_val_predict(clf, x, y, cv=DIGIT_RULE["cv"], method="predict_proba")
    return proba[np.arange(len(y)), y] >= DIGIT_RULE["min_proba"]


def _digit_key(x: np.ndarray, y: np.ndarray) -> dict:
    """Everything the digit selection depends on: the rule, the libraries that fit it and the
    digits themselves."""
    import scipy
    import sklearn

    data = hashlib.sha1(np.ascontiguousarray(x).tobytes() + np.ascontiguousarray(y).tobytes())
    return {
        "version": DIGITS_CACHE_VERSION,
        "rule": DIGIT_RULE,
        "libraries": {"sklearn": sklearn.__version__, "scipy": scipy.__version__},
        "numpy": np.__version__,
        "digits": data.hexdigest(),
    }


def _read_keep(path: Path, key: dict, n: int) -> np.ndarray | None:
    """The cached mask at ``path`` when it is there, readable and made under ``key``."""
    try:
        with np.load(path) as stored:
            keep = stored["keep"]
            same = json.loads(str(stored["key"])) == key
    except FileNotFoundError:
        return None
    except Exception as err:  # a damaged file is made again
        log.warning("the cached digit selection %s is unreadable (%s); making it again", path, err)
        return None
    if not same or keep.dtype != bool or keep.shape != (n,):
        log.warning("the cached digit selection %s does not match its key; making it again", path)
        return None
    return keep


def _write_keep(path: Path, key: dict, keep: np.ndarray) -> None:
    """Write the mask atomically (a temporary file, then a rename): a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, keep=keep, key=np.array(json.dumps(key, sort_keys=True)))
        os.replace(tmp, path)
    except OSError as err:  # a read-only data dir: the selection is only not cached
        tmp.unlink(missing_ok=True)
        log.warning("could not cache the digit selection in %s (%s)", path, err)


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """Unambiguous digit exemplars: those that a 5-fold cross-validated logistic regression on
    the raw 8x8 pixels gives the true class with probability >= 0.9 (1,459 of 1,797). Malformed
    digits would make the object itself ambiguous; the benchmark's one confound is the background.

    The selection is cached in :func:`digits_cache_dir` (``digits-v<version>-<key hash>.npz``,
    keyed by :func:`_digit_key`), so that a second dataset skips the fit."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data / 16.0, d.target
    key = _digit_key(x, y)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = digits_cache_dir() / f"digits-v{DIGITS_CACHE_VERSION}-{digest}.npz"
    keep = _read_keep(path, key, len(y))
    if keep is None:
        keep = _select_digits(x, y)
        _write_keep(path, key, keep)
    return d.images[keep].astype(np.float32) / 16.0, y[keep].astype(np.int64)


def _hsv_color(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.0)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, np.float32) * 255


class SyntheticSpurious(RecordDataset):
    """Digits on textures with a spurious class-background tie (see the module docstring).

    Args:
        root: folder of the dataset; default ``<data dir>/synthetic/<hash of the parameters>``.
        num_classes: K, the number of classes and of background kinds (2-10).
        rho: probability that a train/val image of class k sits on background k.
        train_per_class: train images per class.
        val_per_class: val images per class.
        test_per_class: images per class in each test split.
        height: image height in pixels.
        width: image width in pixels.
        object_size: min and max side of the pasted digit in pixels.
        seed: generator seed.
    """

    val_split = "val"
    test_splits = ["test_id", "test_shift", "test_random"]

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 4,
        rho: float = 1.0,
        train_per_class: int = 300,
        val_per_class: int = 50,
        test_per_class: int = 100,
        height: int = 64,
        width: int = 80,
        object_size: tuple[int, int] = (20, 36),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 2 <= num_classes <= len(BACKGROUNDS):
            raise ValueError(
                f"num_classes={num_classes}: the benchmark supports 2 to {len(BACKGROUNDS)} classes"
            )
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rho={rho} must be a probability in [0, 1]")
        if not 4 <= object_size[0] <= object_size[1] <= min(height, width):
            raise ValueError(
                f"object_size={object_size} must satisfy 4 <= min <= max <= {min(height, width)}"
            )
        self.params = {
            "num_classes": num_classes,
            "rho": rho,
            "per_class": {"train": train_per_class, "val": val_per_class, "test": test_per_class},
            "height": height,
            "width": width,
            "object_size": list(object_size),
            "seed": seed,
            "version": 2,
        }
        digest = hashlib.sha1(json.dumps(self.params, sort_keys=True).encode()).hexdigest()[:8]
        self.root = (
            Path(root) if root else default_data_dir() / "synthetic" / f"k{num_classes}-{digest}"
        )
        self.class_names = CLASS_NAMES[:num_classes]
        self.group_names = [name.split(".")[0] for _, name in BACKGROUNDS[:num_classes]]

    @property
    def name(self) -> str:
        return "synthetic"

    # ------------------------------------------------------------------ generation
    def is_generated(self) -> bool:
        marker = self.root / "generator.json"
        if not marker.is_file():
            return False
        stored = json.loads(marker.read_text())
        if stored != self.params:
            raise ValueError(
                f"{self.root} holds a synthetic benchmark generated with {stored}, not {self.params}. "
                "Choose another root or delete that folder."
            )
        return True

    def prepare(self) -> None:
        """Generate the dataset under ``root`` unless it is already there (atomic rename)."""
        if self.is_generated():
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(
                f"{self.root} exists, is not empty and holds no generator.json; choose another root"
            )
        tmp = self.root.with_name(f".{self.root.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the synthetic benchmark into %s", self.root)
        self._generate(tmp)
        (tmp / "generator.json").write_text(json.dumps(self.params, sort_keys=True))
        self.root.parent.mkdir(parents=True, exist_ok=True)
        if self.root.exists():
            self.root.rmdir()
        os.replace(tmp, self.root)

    def _background_of(self, split: str, label: int, rng: np.random.Generator) -> int:
        k = self.params["num_classes"]
        if split in ("train", "val"):
            if rng.random() < self.params["rho"]:
                return label
            return int((label + rng.integers(1, k)) % k)
        if split == "test_id":
            return label
        if split == "test_shift":
            return (label + 1) % k
        return int(rng.integers(k))

    def _render(
        self, label: int, place: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        h, w = self.params["height"], self.params["width"]
        src = _background_source(place)
        side = int(min(src.shape[:2]) * rng.uniform(0.3, 0.6))
        cy, cx = rng.integers(0, src.shape[0] - side + 1), rng.integers(0, src.shape[1] - side + 1)
        crop = src[cy : cy + side, cx : cx + side]
        crop_w = min(int(side * w / h), src.shape[1] - cx)
        crop = src[cy : cy + side, cx : cx + crop_w]
        bg = np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR)).astype(np.float32)
        images, targets = _digits()
        pool = np.nonzero(targets == label)[0]
        digit = images[pool[rng.integers(len(pool))]]
        lo, hi = self.params["object_size"]
        size = int(rng.integers(lo, hi + 1))
        alpha = np.asarray(Image.fromarray(digit).resize((size, size), Image.BILINEAR))
        alpha = np.clip(alpha * 1.6, 0.0, 1.0)
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        color = _hsv_color(rng)
        region = bg[y0 : y0 + size, x0 : x0 + size]
        bg[y0 : y0 + size, x0 : x0 + size] = (
            region * (1 - alpha[..., None]) + color * alpha[..., None]
        )
        mask = np.zeros((h, w), np.uint8)
        mask[y0 : y0 + size, x0 : x0 + size] = alpha > 0.4
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        return np.clip(bg, 0, 255).astype(np.uint8), mask, box

    def _generate(self, out: Path) -> None:
        k = self.params["num_classes"]
        rows = []
        img_id = 0
        for s, split in enumerate(SPLITS):
            n = self.params["per_class"]["test" if split.startswith("test") else split]
            for label in range(k):
                cname = self.class_names[label]
                (out / "images" / split / cname).mkdir(parents=True, exist_ok=True)
                (out / "masks" / split / cname).mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    rng = np.random.default_rng([self.params["seed"], s, label, i])
                    place = self._background_of(split, label, rng)
                    image, mask, box = self._render(label, place, rng)
                    img_name = f"images/{split}/{cname}/{img_id:06d}.png"
                    mask_name = f"masks/{split}/{cname}/{img_id:06d}.png"
                    Image.fromarray(image).save(out / img_name, compress_level=1)
                    Image.fromarray(mask).save(out / mask_name)
                    rows.append(
                        [
                            img_id,
                            img_name,
                            label,
                            cname,
                            split,
                            place,
                            self.group_names[place],
                            mask_name,
                            *box,
                        ]
                    )
                    img_id += 1
        with open(out / "metadata.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "img_id",
                    "img_filename",
                    "y",
                    "class_name",
                    "split",
                    "place",
                    "place_name",
                    "mask_filename",
                    "x0",
                    "y0",
                    "x1",
                    "y1",
                ]
            )
            writer.writerows(rows)

    # ------------------------------------------------------------------ reading
    def load_records(self) -> list[Record]:
        index = self.root / "metadata.csv"
        if not index.is_file():
            raise FileNotFoundError(
                f"{index} not found: the synthetic benchmark is not generated yet. Call prepare() or run "
                "any occam_l2r command with this dataset (it generates it, ~20 s)."
            )
        out = []
        with open(index, newline="") as fh:
            for row in csv.DictReader(fh):
                out.append(
                    Record(
                        image_id=row["img_filename"],
                        label=int(row["y"]),
                        split=row["split"],
                        group=row["place_name"],
                        metadata={"place": int(row["place"])},
                        mask_path=row["mask_filename"],
                    )
                )
        return out
