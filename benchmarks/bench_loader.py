"""Benchmark: can the data loader keep a GPU fed? Images/s per DataLoader worker at 224 px.

A realistic set is written once (cached under ``--root``): ``--images`` JPEGs (quality 90)
whose longer side is 400-500 px and shorter side 0.75-1.0 of it (ImageNet averages ~400x350,
FungiTastic up to 500 px), each a crop of one of the photographs shipped with scikit-image and
scikit-learn with an object pasted on it (a crop of another photograph inside a random
ellipse), and its ground-truth mask as a PNG. The toolkit's own ``ViewDataModule``
(``data.segmentation: gt``) checks the images and converts the masks into a store of RLE masks
through the project's store writer (:func:`occam_l2r.gt_store.build_gt_store`).

Then, one view at a time, the DataModule's loaders with ``num_workers=0`` are timed: that is
exactly the work of one DataLoader worker (read the JPEG, look the image up in the store and
decode its RLE mask, make the view, augment, make uint8 tensors, collate a batch), in one
process with one torch/OpenCV thread, as a worker runs. The training loader (random resized
crop + flip) and the evaluation loader (resize) of FULL, FG_C, FG_M and BG_S are set beside a
plain loader on the same files: PIL decode + torchvision ``RandomResizedCrop`` + flip (the timm
default training transform; scale (0.08, 1)), and ``Resize(256)`` + ``CenterCrop(224)`` for
evaluation, both giving uint8 tensors. Every loader resizes with ``--interpolation``
(ConvNeXtV2's ``bicubic`` by default). Normalisation is not timed: the tasks do it on the
device, on the uint8 batch (``on_after_batch_transfer``).

Targets: every view >= 0.9x the plain loader; the last column says how many workers keep a
ConvNeXtV2-B at ``--gpu_rate`` (1,000) images/s busy. ``--workers N`` also times the real
multi-process loaders (``pin_memory`` when CUDA is there, ``persistent_workers``) end to end.
``--profile VIEW`` prints where one view's ``__getitem__`` spends its time (cProfile);
``--plain_variants`` adds the plain loader with PIL's JPEG ``draft`` mode (DCT-domain
downscaling by 1/2, 1/4 or 1/8 while both sides stay >= 224: other pixels) and with
``torchvision.io.decode_jpeg`` + transforms on uint8 tensors: what the libraries allow, for
comparison (neither is used by the toolkit; docs/views_and_data.md, "Loader speed").

    python benchmarks/bench_loader.py [--images 2000] [--measure 600] [--repeats 2]
        [--interpolation bicubic] [--workers 0] [--profile FG_M] [--plain_variants]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import json
import math
import os
import pstats
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.records import Record, RecordDataset

VIEWS = ["FULL", "FG_C", "FG_M", "BG_S"]
#: the plain loader must be matched by every view within this factor
TARGET_RATIO = 0.9
#: ConvNeXtV2-B training at 224 px with bf16 on one modern GPU (the issue's figure)
GPU_RATE = 1000.0
#: scikit-image's colour photographs (bundled, no download) and scikit-learn's two
PHOTOS = [
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
    "retina", "stereo_motorcycle",
]  # fmt: skip
CLASSES = [f"class{k}" for k in range(10)]
GENERATOR_VERSION = 1


def photographs() -> list[np.ndarray]:
    """The source photographs, ``(H, W, 3)`` uint8."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = []
    for name in PHOTOS:
        im = getattr(skimage.data, name)()
        out.append(im[0] if isinstance(im, tuple) else im)
    out += list(load_sample_images().images)
    return [np.ascontiguousarray(p[..., :3]) for p in out]


def _crop_resized(rng: np.random.Generator, photo: np.ndarray, h: int, w: int) -> np.ndarray:
    ph, pw = photo.shape[:2]
    frac = rng.uniform(0.5, 1.0)
    ch, cw = max(8, int(ph * frac)), max(8, int(pw * frac))
    top, left = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = photo[top : top + ch, left : left + cw]
    return np.array(Image.fromarray(crop).resize((w, h), Image.BILINEAR))


def make_image(rng: np.random.Generator, photos: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One picture (longer side 400-500 px) with an object in a random ellipse, and its mask."""
    long = int(rng.integers(400, 501))
    short = int(long * rng.uniform(0.75, 1.0))
    h, w = (short, long) if rng.random() < 0.7 else (long, short)
    a, b = rng.choice(len(photos), 2, replace=False)
    image = _crop_resized(rng, photos[a], h, w)
    # an ellipse covering ~5-45 % of the picture, rotated, possibly cut by the border
    ry, rx = h * rng.uniform(0.15, 0.4), w * rng.uniform(0.15, 0.4)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    mask = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    obj = _crop_resized(rng, photos[b], h, w)
    image[mask] = obj[mask]
    return image, mask


def write_set(root: Path, n: int, seed: int = 0) -> Path:
    """Write (once; reused while ``generator.json`` matches) ``n`` JPEGs and their mask PNGs
    under ``root`` with ``metadata.csv``; 80 % train, 20 % val."""
    params = {"version": GENERATOR_VERSION, "images": n, "seed": seed}
    marker = root / "generator.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    rng = np.random.default_rng(seed)
    photos = photographs()
    rows = []
    for i in range(n):
        split = "train" if i < int(n * 0.8) else "val"
        label = i % len(CLASSES)
        image, mask = make_image(rng, photos)
        img = f"images/{split}/{CLASSES[label]}/{i:06d}.jpg"
        msk = f"masks/{split}/{CLASSES[label]}/{i:06d}.png"
        for rel in (img, msk):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / img, quality=90)
        Image.fromarray(mask.astype(np.uint8)).save(root / msk)
        rows.append({"image": img, "mask": msk, "label": label, "split": split})
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "mask", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    marker.write_text(json.dumps(params))
    return root


class LoaderBenchSet(RecordDataset):
    """The written set as a record dataset (``metadata.csv``: image, mask, label, split)."""

    class_names = CLASSES
    test_splits: list[str] = []

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root)

    @property
    def name(self) -> str:
        return "bench_loader"

    def load_records(self) -> list[Record]:
        with open(self.root / "metadata.csv", newline="") as fh:
            return [
                Record(r["image"], int(r["label"]), r["split"], mask_path=r["mask"])
                for r in csv.DictReader(fh)
            ]


#: the plain loaders: timm's default (PIL decode, PIL transforms) and, with
#: ``--plain_variants``, PIL's JPEG draft mode and torchvision's decoder + tensor transforms
PLAIN = ["plain", "plain_draft", "plain_tvio"]


class PlainDataset(Dataset):
    """A plain loader on the files: decode + a torchvision transform to uint8 ``(3, H, W)``.

    ``decoder``: ``pil`` (timm's loader), ``pil_draft`` (PIL with ``draft("RGB", (size,
    size))``: DCT-domain scaling by 1/2, 1/4 or 1/8 while both sides stay >= ``size``) or
    ``tvio`` (``torchvision.io.decode_jpeg`` to a uint8 tensor, transforms on the tensor).
    """

    def __init__(self, paths: list[Path], transform: T.Compose, decoder: str, size: int) -> None:
        self.paths, self.transform, self.decoder, self.size = paths, transform, decoder, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path = self.paths[index]
        if self.decoder == "tvio":
            from torchvision.io import ImageReadMode, decode_jpeg, read_file

            image = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
        else:
            with Image.open(path) as im:
                if self.decoder == "pil_draft":
                    im.draft("RGB", (self.size, self.size))
                image = im.convert("RGB")
        return {"image": self.transform(image), "label": torch.tensor(index % len(CLASSES))}


def plain_transform(train: bool, size: int, interpolation: str, tensor: bool = False) -> T.Compose:
    """timm's default training transform (random resized crop, scale (0.08, 1), flip) or its
    evaluation transform (shorter side to size / 0.875, centre crop), uint8 out; on PIL images,
    or (``tensor``) on uint8 tensors (antialiased, as PIL)."""
    mode = T.InterpolationMode(interpolation)
    if train:
        ops = [
            T.RandomResizedCrop(size, interpolation=mode, antialias=True),
            T.RandomHorizontalFlip(),
        ]
    else:
        ops = [
            T.Resize(math.floor(size / 0.875), interpolation=mode, antialias=True),
            T.CenterCrop(size),
        ]
    return T.Compose(ops if tensor else [*ops, T.PILToTensor()])


def datamodule(root: Path, view: str, args: argparse.Namespace, workers: int = 0) -> ViewDataModule:
    dm = ViewDataModule(
        LoaderBenchSet(root),
        view=view,
        segmentation="gt",
        image_size=args.image_size,
        interpolation=args.interpolation,
        batch_size=args.batch_size,
        num_workers=workers,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def loaders(root: Path, args: argparse.Namespace, workers: int = 0) -> dict[str, DataLoader]:
    """Every timed loader by name (``FULL/train``, ..., ``plain/eval``): the DataModule's own
    training loader (train split) and evaluation loader (val split) of each view, and the plain
    loader on the same files with the same batch size, workers and pinning."""
    out: dict[str, DataLoader] = {}
    for view in VIEWS:
        dm = datamodule(root, view, args, workers)
        out[f"{view}/train"], out[f"{view}/eval"] = dm.train_dataloader(), dm.val_dataloader()
    pin = bool(out["FULL/train"].pin_memory)
    dataset = LoaderBenchSet(root)
    for split, mode in (("train", "train"), ("val", "eval")):
        paths = [dataset.image_path(r) for r in dataset.records(split)]
        for name in PLAIN if args.plain_variants else PLAIN[:1]:
            decoder = {"plain": "pil", "plain_draft": "pil_draft", "plain_tvio": "tvio"}[name]
            transform = plain_transform(
                mode == "train", args.image_size, args.interpolation, tensor=decoder == "tvio"
            )
            out[f"{name}/{mode}"] = DataLoader(
                PlainDataset(paths, transform, decoder, args.image_size),
                batch_size=args.batch_size, shuffle=mode == "train", num_workers=workers,
                pin_memory=pin, persistent_workers=workers > 0,
            )  # fmt: skip
    return out


def images_per_s(loader: DataLoader, limit: int) -> float:
    """Images/s of the first ``limit`` images (whole batches) of one pass over ``loader``."""
    torch.manual_seed(0)
    n, start = 0, time.perf_counter()
    for batch in loader:
        n += len(batch["image"])
        if n >= limit:
            break
    return n / (time.perf_counter() - start)


def measure(root: Path, args: argparse.Namespace, workers: int = 0) -> dict[str, float]:
    """Best images/s of ``--repeats`` passes of each loader, round-robin (a drift of a busy
    machine hits every loader alike)."""
    timed = loaders(root, args, workers)
    best = {name: 0.0 for name in timed}
    for _ in range(args.repeats):
        for name, loader in timed.items():
            best[name] = max(best[name], images_per_s(loader, args.measure))
    return best


def table(rates: dict[str, float], gpu_rate: float, per: str, workers: int = 1) -> str:
    """The markdown table: images/s, ratio to the plain loader, and the workers that
    ``gpu_rate`` needs at the rate of one worker (``rate / workers``)."""
    lines = [
        f"| loader | transform | images/s {per} | ratio to plain | workers for {gpu_rate:,.0f} images/s |",
        "|---|---|---|---|---|",
    ]
    for mode in ("train", "eval"):
        plain = rates[f"plain/{mode}"]
        for view in [*VIEWS, *PLAIN]:
            if f"{view}/{mode}" not in rates:
                continue
            rate = rates[f"{view}/{mode}"]
            need = math.ceil(gpu_rate * workers / rate) if rate > 0 else float("inf")
            lines.append(f"| {view} | {mode} | {rate:.0f} | {rate / plain:.2f} | {need} |")
    return "\n".join(lines)


def worst_ratio(rates: dict[str, float]) -> float:
    return min(rates[f"{v}/{m}"] / rates[f"plain/{m}"] for v in VIEWS for m in ("train", "eval"))


def profile(root: Path, view: str, args: argparse.Namespace, top: int = 25) -> str:
    """cProfile of ``__getitem__`` of ``view``'s training dataset over ``--measure`` images."""
    dataset = datamodule(root, view, args).train_dataloader().dataset
    n = min(args.measure, len(dataset))
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        dataset[i]
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    lines = [f"{view} __getitem__ over {n} images: {1e3 * total / n:.2f} ms per image (profiled)"]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # tottime
    for (file, line, func), (_, calls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line}({func})" if line else func
        lines.append(
            f"  {1e3 * tottime / n:7.3f} ms own  {1e3 * cumtime / n:7.3f} ms cum  {calls / n:5.1f}/img  {where}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_root = Path(os.environ.get("OCCAM_L2R_DATA", Path.home() / ".cache" / "occam_l2r"))
    parser.add_argument("--root", type=Path, default=default_root / "bench_loader")
    parser.add_argument("--images", type=int, default=2000, help="JPEGs written (80 %% train)")
    parser.add_argument("--measure", type=int, default=600, help="images timed per loader")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--interpolation", default="bicubic", choices=["bilinear", "bicubic"])
    parser.add_argument("--gpu_rate", type=float, default=GPU_RATE)
    parser.add_argument("--workers", type=int, default=0, help="also time N-worker loaders")
    parser.add_argument("--profile", default=None, choices=VIEWS, help="profile one view")
    parser.add_argument(
        "--plain_variants",
        action="store_true",
        help="also the plain loader with PIL's JPEG draft mode and with torchvision.io",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # as in a DataLoader worker
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    root = write_set(args.root, args.images)
    datamodule(root, "FG_M", args)  # checks the images, builds the gt store of RLE masks
    print(f"set: {args.images} JPEGs + gt store under {root} ({time.perf_counter() - t0:.1f} s)")
    if args.profile:
        print(profile(root, args.profile, args))
    rates = measure(root, args)
    print(
        f"\nper worker (num_workers=0, 1 thread), {args.image_size} px, {args.interpolation}, "
        f"batch {args.batch_size}, best of {args.repeats} over {args.measure} images"
    )
    print(table(rates, args.gpu_rate, "per worker"))
    worst = worst_ratio(rates)
    verdict = "OK" if worst >= TARGET_RATIO else "BELOW TARGET"
    print(f"worst view / plain ratio {worst:.2f} (target >= {TARGET_RATIO}): {verdict}")
    if args.workers > 0:
        total = measure(root, args, args.workers)
        print(f"\n{args.workers} workers (pin_memory={torch.cuda.is_available()}, persistent)")
        print(table(total, args.gpu_rate, f"with {args.workers} workers", args.workers))
    return rates


if __name__ == "__main__":
    main()
