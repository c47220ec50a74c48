"""ImageNet-D (Zhang et al., CVPR 2024), read from the layout of chenshuang-zhang/imagenet_d.

``ImageNet-D.tar`` (Google Drive link of the repo's README; also huggingface.co/datasets/zcs15/
ImageNet-D) extracts to::

    ImageNet-D/background/<class folder>/<image>.png
    ImageNet-D/texture/<class folder>/...
    ImageNet-D/material/<class folder>/...
    ImageNet-D/questions/{background,texture,material}.csv   (VQA questions, not read)

``root`` is the ``ImageNet-D`` folder. 113 classes, one folder each (``alarm_clock``, ...,
``wok``); the label is the class's ImageNet-D id, the folder's rank in sorted order (the repo's
``preprocessing/imgnet_d_dir2imgnet_d_id.txt``). Class names are the names of that file as the
repo's ``evaluate_vlm.py`` prompts CLIP with them (underscores as spaces, ``binder (closed)``).
Each class stands for one or more ImageNet-1k classes (``preprocessing/imgnet_d2imgnet_id.txt``,
embedded below as :data:`IMAGENET_INDICES`: ``chair`` is [423, 559, 765]); a 1000-way prediction
is right if it is any of them (``utils/data_loaders_imgnet_id.py``), which is what scoring through
:attr:`ImageNetD.imagenet_to_class` gives (the index sets do not overlap).

OCCAM (Tables 4 and 8) evaluates the ``background`` subset zero-shot: evaluation only, no train
split. Each subset in ``subsets`` is a test split of that name (group = the subset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    list_folders,
    list_images,
    require_dir,
)
from occam_l2r.data.records import Record, RecordDataset

SUBSETS = ("background", "texture", "material")
Subset = Literal["background", "texture", "material"]
#: class folder -> ImageNet-1k indices (chenshuang-zhang/imagenet_d@30045f7,
#: preprocessing/imgnet_d2imgnet_id.txt); key order = ImageNet-D id order
IMAGENET_INDICES: dict[str, list[int]] = {
    "alarm_clock": [409, 530], "backpack": [414], "banana": [954], "band_aid": [419],
    "bath_towel": [434], "beer_bottle": [440], "bench": [703], "bicycle": [671, 444],
    "binder_closed": [446], "bottle_cap": [455], "bread_loaf": [930], "broom": [462],
    "bucket": [463], "can_opener": [473], "candle": [470], "cellphone": [487],
    "chair": [423, 559, 765], "cleaver": [499], "clothes_hamper": [588],
    "coffee_or_french_press": [550], "combination_lock": [507], "computer_mouse": [673],
    "desk_lamp": [846], "dishcloth": [533], "doormat": [539], "dress_shoe_men": [630],
    "drill": [740], "drying_rack_for_plates": [729], "envelope": [549], "fan": [545],
    "frying_pan": [567], "gown": [578], "hair_dryer": [589], "hammer": [587],
    "helmet": [560, 518], "iron_for_clothes": [606], "jeans": [608], "keyboard": [508],
    "ladle": [618], "lampshade": [619], "laptop_open": [620], "lemon": [951],
    "letter_opener": [623], "lighter": [626], "lipstick": [629], "matchstick": [644],
    "measuring_cup": [647], "microwave": [651], "mixing_or_salad_bowl": [659], "monitor": [664],
    "mug": [504], "nail_fastener": [677], "necklace": [679], "orange": [950], "padlock": [695],
    "paintbrush": [696], "paper_towel": [700], "pen": [418, 749, 563], "pill_bottle": [720],
    "pillow": [721], "pitcher": [725], "plastic_bag": [728], "plate": [923], "plunger": [731],
    "pop_can": [737], "portable_heater": [811], "printer": [742], "remote_control": [761],
    "ruler": [769], "running_shoe": [770], "safety_pin": [772], "salt_shaker": [773],
    "sandal": [774], "screw": [783], "shopping_basket": [790], "shovel": [792],
    "skirt": [601, 655, 689], "sleeping_bag": [797], "soap_dispenser": [804], "sock": [806],
    "soup_bowl": [809], "spatula": [813], "speaker": [632], "still_camera": [732, 759],
    "strainer": [828], "suit_jacket": [834], "sunglasses": [837], "sweater": [841],
    "swimming_trunks": [842], "t_shirt": [610], "tea_cup": [968], "teapot": [849],
    "teddy_bear": [850], "tennis_racket": [752], "tie": [457, 906], "toaster": [859],
    "toilet_paper_roll": [999], "trash_bin": [412], "tray": [868], "tv": [851],
    "umbrella": [879], "vacuum_cleaner": [882], "vase": [883], "wallet": [893], "watch": [531],
    "water_bottle": [898], "weight_exercise": [543], "weight_scale": [778], "wheel": [479, 694],
    "whistle": [902], "wine_bottle": [907], "winter_glove": [658], "wok": [909],
}  # fmt: skip
#: the names of imgnet_d_dir2imgnet_d_id.txt that are not the folder name with spaces
DISPLAY_NAMES = {
    "binder_closed": "binder (closed)", "dress_shoe_men": "dress shoe (men)",
    "iron_for_clothes": "iron (for clothes)", "laptop_open": "laptop (open)",
    "nail_fastener": "nail (fastener)", "weight_exercise": "weight (exercise)",
}  # fmt: skip
CLASS_FOLDERS = list(IMAGENET_INDICES)
DOWNLOAD_HINT = (
    "Download ImageNet-D.tar (github.com/chenshuang-zhang/imagenet_d, README) and set root to "
    "the extracted ImageNet-D folder that holds background/, texture/, material/."
)


class ImageNetD(RecordDataset):
    """ImageNet-D: 113 classes of diffusion-generated images; one test split per subset.

    Args:
        root: the ``ImageNet-D`` folder.
        subsets: the subsets to read (``background``, ``texture``, ``material``); OCCAM uses
            ``background``.
    """

    val_split = None
    train_split: str | None = None

    def __init__(self, root: str, subsets: list[Subset] | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.subsets = list(subsets) if subsets is not None else ["background"]
        unknown = [s for s in self.subsets if s not in SUBSETS]
        if unknown or not self.subsets:
            raise ValueError(f"ImageNetD: subsets {self.subsets} must be among {list(SUBSETS)}")
        require_dir(self.root, "ImageNetD", DOWNLOAD_HINT)
        for subset in self.subsets:
            require_dir(self.root / subset, "ImageNetD", DOWNLOAD_HINT)
        self.class_names = [DISPLAY_NAMES.get(f, f.replace("_", " ")) for f in CLASS_FOLDERS]
        self.test_splits = list(self.subsets)
        self.group_names = list(self.subsets)

    @property
    def name(self) -> str:
        return "imagenet_d"

    @property
    def imagenet_index_sets(self) -> list[list[int]]:
        """The ImageNet-1k indices each class stands for (a prediction of any is right)."""
        return [list(IMAGENET_INDICES[f]) for f in CLASS_FOLDERS]

    @property
    def imagenet_to_class(self) -> dict[int, int]:
        """ImageNet-1k index -> ImageNet-D class (for :func:`~occam_l2r.data.datasets.imagenet.
        imagenet_mapped_accuracy`); the 887 indices of no class are unmapped (wrong)."""
        return {i: k for k, f in enumerate(CLASS_FOLDERS) for i in IMAGENET_INDICES[f]}

    def load_records(self) -> list[Record]:
        records = []
        label_of = {f: k for k, f in enumerate(CLASS_FOLDERS)}
        for subset in self.subsets:
            folder = require_dir(self.root / subset, "ImageNetD", DOWNLOAD_HINT)
            classes = list_folders(folder)
            unknown = [c for c in classes if c not in label_of]
            if unknown or not classes:
                raise DatasetLayoutError(
                    f"ImageNetD: {folder} holds {'the folders ' + str(unknown[:3]) if unknown else 'no class folder'}, "
                    f"but its class folders are the 113 ImageNet-D classes ({CLASS_FOLDERS[0]}, ...). "
                    f"{DOWNLOAD_HINT}"
                )
            for cls in classes:
                records += [
                    Record(f"{subset}/{cls}/{f}", label_of[cls], subset, group=subset)
                    for f in list_images(folder / cls)
                ]
        return records
