"""Write a tiny fake FungiTastic-Mini in the original layout (BohemianVRA/FungiTastic).

Three species (category_id 0-2); train has every species, val and test miss one each, like the
real val/test. The file names are the ones the authors' evaluation code reads
(``baselines/vlm_fusion/vlm_utils.py``): ``FungiTastic-Mini-Train.csv``,
``FungiTastic-Mini-ClosedSet-{Val,Test}.csv``. Like the released files, the test CSV has no labels
(no ``category_id``, no species or taxonomy columns): they are in
``metadata/FungiTastic/FungiTastic-test-DEV.csv``, which covers the whole FungiTastic test set
(more images than Mini's, some with ``category_id == -1``, unknown species) in another row order.
Images go to ``FungiTastic-Mini/<split>/500p`` (the size the configs read; ``size`` changes it).
Masks are written at twice the image size (the loader must resize them), the train parquet with
list-valued ``rle`` cells and the val parquet with string cells, as the repo's decoder allows.

    python tests/data/fungitastic/make_fake.py <root>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

COLUMNS = [
    "eventDate", "year", "month", "day", "habitat", "countryCode", "scientificName", "kingdom",
    "phylum", "class", "order", "family", "genus", "specificEpithet", "hasCoordinate", "species",
    "iucnRedListCategory", "substrate", "latitude", "longitude", "coorUncert", "observationID",
    "region", "district", "filename", "category_id", "metaSubstrate", "poisonous", "elevation",
    "landcover", "biogeographicalRegion",
]  # fmt: skip
SPECIES = ["Amanita muscaria", "Boletus edulis", "Cantharellus cibarius"]
HABITATS = ["Mixed woodland", "Deciduous woodland", "Coniferous woodland"]
SUBSTRATES = ["soil", "wood", "leaf or needle litter"]
#: split -> (year, CSV file name, category ids present, images per class)
SPLITS = {
    "train": (2021, "FungiTastic-Mini-Train.csv", [0, 1, 2], 3),
    "val": (2022, "FungiTastic-Mini-ClosedSet-Val.csv", [0, 1], 2),
    "test": (2023, "FungiTastic-Mini-ClosedSet-Test.csv", [1, 2], 2),
}
IMAGE_HW = (24, 32)
#: the columns the released test CSV lacks (the label and what follows from the species)
TEST_HIDDEN = [
    "category_id", "species", "scientificName", "kingdom", "phylum", "class", "order", "family",
    "genus", "specificEpithet", "iucnRedListCategory", "poisonous",
]  # fmt: skip
#: where the test labels are (relative to root), as the authors' code reads them
TEST_LABELS = "metadata/FungiTastic/FungiTastic-test-DEV.csv"


def rle_encode(mask: np.ndarray) -> list[int]:
    """FungiTastic RLE: row-major runs starting with background, then the xyxy bbox."""
    flat = mask.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], change])).tolist()
    ys, xs = np.nonzero(mask)
    return [int(r) for r in runs] + [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _row(split: str, year: int, cid: int, k: int, filename: str) -> dict:
    row = {c: None for c in COLUMNS}
    genus, epithet = SPECIES[cid].split()
    row.update(
        eventDate=f"{year}-0{k + 8}-1{cid}", year=year, month=k + 8, day=10 + cid,
        habitat=HABITATS[cid], countryCode="DK", scientificName=SPECIES[cid], kingdom="Fungi",
        phylum="Basidiomycota", order="Agaricales", family="Fam", genus=genus,
        specificEpithet=epithet, hasCoordinate=True, species=SPECIES[cid],
        substrate=SUBSTRATES[(cid + k) % 3], latitude=55.0 + k, longitude=10.0 + cid,
        coorUncert=10.0, observationID=1000 * cid + k, region="Region", district="District",
        filename=filename, category_id=cid, metaSubstrate="wood", poisonous=int(cid == 0),
        elevation=12.5, landcover=3.0, biogeographicalRegion="continental",
    )  # fmt: skip
    row["class"] = "Agaricomycetes"
    if split == "train" and k == 0:
        row["habitat"] = None  # real CSVs have missing cells
    return row


def make_fake(
    root: Path, with_masks: bool = True, size: str = "500p", test_labels: bool = True
) -> dict[str, int]:
    """Write the fake dataset under ``root`` (the ``FungiTastic`` folder); return rows per split.

    Args:
        size: the image folder written (``500p``, the configs' size; ``300p``...).
        test_labels: write the DEV file that holds the test labels (False: a download without it).
    """
    rng = np.random.default_rng(0)
    meta_dir = root / "metadata" / "FungiTastic-Mini"
    meta_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    mask_rows: dict[str, list[dict]] = {"train": [], "val": []}
    for split, (year, csv_name, cids, per_class) in SPLITS.items():
        img_dir = root / "FungiTastic-Mini" / split / size
        img_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for cid in cids:
            for k in range(per_class):
                filename = f"{split}-{cid}-{k}.JPG"
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(img_dir / filename, format="JPEG")
                rows.append(_row(split, year, cid, k, filename))
                if split in mask_rows and k == 0:
                    h, w = 2 * IMAGE_HW[0], 2 * IMAGE_HW[1]
                    cap = np.zeros((h, w), dtype=bool)
                    cap[4:20, 8:40] = True
                    stem = np.zeros((h, w), dtype=bool)
                    stem[20:44, 20:28] = True
                    for label, part in (("cap", cap), ("stem", stem)):
                        rle = rle_encode(part)
                        cell = str(rle) if split == "val" else rle
                        mask_rows[split].append(
                            {
                                "file_name": filename,
                                "label": label,
                                "width": w,
                                "height": h,
                                "rle": cell,
                            }
                        )
        frame = pd.DataFrame(rows, columns=COLUMNS)
        if split == "test":
            frame.drop(columns=TEST_HIDDEN).to_csv(meta_dir / csv_name, index=False)
            if test_labels:
                _write_dev(root / TEST_LABELS, frame)
        else:
            frame.to_csv(meta_dir / csv_name, index=False)
        counts[split] = len(rows)
    if with_masks:
        (root / "masks").mkdir(exist_ok=True)
        pd.DataFrame(mask_rows["train"]).to_parquet(
            root / "masks" / "FungiTastic-Mini-TrainMasks.parquet"
        )
        pd.DataFrame(mask_rows["val"]).to_parquet(
            root / "masks" / "FungiTastic-Mini-ValidationMasks.parquet"
        )
    return counts


def _write_dev(path: Path, mini_test: pd.DataFrame) -> None:
    """The full test set's DEV file: Mini's test rows (reversed) among rows of other images,
    one of them of an unknown species (``category_id == -1``)."""
    others = pd.DataFrame(
        [_row("test", 2023, 0, 9, "full-only-0.JPG"), _row("test", 2023, 2, 9, "full-only-1.JPG")],
        columns=COLUMNS,
    )
    others.loc[1, ["category_id", "species"]] = [-1, "Unknown fungus"]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([others.iloc[:1], mini_test.iloc[::-1], others.iloc[1:]]).to_csv(path, index=False)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fake_fungitastic")
    print(make_fake(out))
