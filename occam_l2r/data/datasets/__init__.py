"""Dataset modules: each reads one dataset's original on-disk layout and yields records.

Pass a class name and its arguments to the DataModule (``dataset: {class_path: ..., init_args:
{root: ...}}``). Layouts, sources and split conventions are in each module's docstring; where to
get each dataset and the papers' numbers are in docs/datasets.md. :class:`ImageFiles` is not a
benchmark: it lists a folder (or list file) of unlabeled images for ``segment`` and ``classify``.
"""

from occam_l2r.data.datasets.counteranimal import CounterAnimal
from occam_l2r.data.datasets.fungitastic import FungiTasticMini
from occam_l2r.data.datasets.hard_imagenet import HardImageNet
from occam_l2r.data.datasets.image_files import ImageFiles
from occam_l2r.data.datasets.imagenet import ImageNet
from occam_l2r.data.datasets.imagenet9 import ImageNet9
from occam_l2r.data.datasets.imagenet_d import ImageNetD
from occam_l2r.data.datasets.movi import MOVi
from occam_l2r.data.datasets.spawrious import Spawrious
from occam_l2r.data.datasets.stanford_dogs import StanfordDogs
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.datasets.urbancars import UrbanCars
from occam_l2r.data.datasets.waterbirds import Waterbirds

__all__ = [
    "CounterAnimal",
    "FungiTasticMini",
    "HardImageNet",
    "ImageFiles",
    "ImageNet",
    "ImageNet9",
    "ImageNetD",
    "MOVi",
    "Spawrious",
    "StanfordDogs",
    "SyntheticSpurious",
    "UrbanCars",
    "Waterbirds",
]
