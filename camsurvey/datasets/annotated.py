"""Labelled image datasets in the formats people have, read into one list of annotated images.

Three layouts, each read with the parser its ecosystem already has where one exists:

* ``"imagenet"``: the ILSVRC validation images plus their class-and-box annotations as ImageNet
  ships them for the localisation task: ``LOC_val_solution.csv`` (``ImageId,PredictionString``,
  the string holding ``synset x_min y_min x_max y_max`` once per box) and
  ``LOC_synset_mapping.txt`` (one ``synset name, ...`` line per class, in the classifier's class
  order). Without the mapping file, the classes are the solution's synsets in sorted order, as
  ImageNet numbers them, which needs all of the model's classes to be present. The images are
  ``IMAGES/ImageId.JPEG``, ``IMAGES`` being ``ILSVRC/Data/CLS-LOC/val`` (the layout the data is
  distributed in), ``val`` or the folder itself, whichever exists first.
* ``"voc"``: Pascal VOC: ``Annotations/*.xml`` (parsed by :class:`torchvision.datasets.VOCDetection`'s
  own parser) and the ``JPEGImages/`` they name. VOC has no image label: an image's class is the
  class of its largest box, and its boxes are every box of that class (our reading, for a
  single-label classifier).
* ``"folder"``: one folder per class (:class:`torchvision.datasets.ImageFolder`'s layout), no boxes:
  the localisation metrics are then absent, not zero.

Class names map to the model's class indices through ``classes`` (the model's categories, in its
order) or, when the data names its classes by synset (ImageNet), through the synset mapping.

Boxes are ``(x0, y0, x1, y1)`` in the original image's pixels with x1/y1 exclusive, the
convention of :mod:`camsurvey.metrics`. ImageNet's corners are read as they are (``x_max`` as the
exclusive end: a box may reach ``x_max = width``); VOC's are 1-based and inclusive, so
``x0 = xmin - 1``.

A missing file, a box outside its image, an unknown class or an unreadable image never stops a
reader: the image becomes a :class:`Skipped` record with one line naming the file and the fault.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

FORMATS = ("imagenet", "voc", "folder")
IMAGENET_SOLUTION = "LOC_val_solution.csv"
IMAGENET_SYNSETS = "LOC_synset_mapping.txt"
IMAGENET_IMAGE_FOLDERS = ("ILSVRC/Data/CLS-LOC/val", "val", ".")
IMAGENET_EXTENSION = ".JPEG"

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of a dataset: where it is, its class and, if the format has them, its boxes.

    ``label``: the class as the annotations name it (a synset, a VOC name, a folder name);
    ``class_index``: the model's index of that class; ``boxes``: ``None`` when the format has no
    boxes, else every box of the image's class in the original pixels.
    """

    image_id: str
    path: str
    label: str
    class_index: int
    boxes: tuple[Box, ...] | None = None


@dataclass(frozen=True)
class Skipped:
    """An image left out, and why: ``line()`` is the one line a run prints for it."""

    image_id: str
    path: str
    reason: str

    def line(self) -> str:
        return f"skipped {self.path}: {self.reason}"


@dataclass
class AnnotatedDataset:
    """The readable images of a dataset (``images``) and those left out (``skipped``)."""

    format: str
    root: str
    images: list[AnnotatedImage]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def has_boxes(self) -> bool:
        return self.format != "folder"

    def __len__(self) -> int:
        return len(self.images)


class UnreadableImage(ValueError):
    """An image file that cannot be read or decoded (the message says why)."""


# ---------------------------------------------------------------- checks shared by every format

def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file's header; an :class:`UnreadableImage` if PIL cannot read it."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        raise UnreadableImage(f"not an image PIL can read ({error})") from None


def box_fault(box: Box, width: int, height: int) -> str | None:
    """Why ``box`` cannot be a ground-truth box of a ``width`` x ``height`` image, or ``None``."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return f"the box {box} is empty (x1 <= x0 or y1 <= y0)"
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return f"the box {box} lies outside the {width} x {height} image"
    return None


def checked(image: AnnotatedImage) -> AnnotatedImage | Skipped:
    """``image`` if its file is readable and its boxes lie inside it, else the :class:`Skipped` record."""
    path = Path(image.path)
    if not path.is_file():
        return Skipped(image.image_id, image.path, "the file does not exist")
    try:
        width, height = image_size(path)
    except UnreadableImage as error:
        return Skipped(image.image_id, image.path, str(error))
    for box in image.boxes or ():
        fault = box_fault(box, width, height)
        if fault:
            return Skipped(image.image_id, image.path, fault)
    return image


def class_lookup(classes: Sequence[str], synsets: Sequence[str] | None = None) -> dict[str, int]:
    """Class name -> the model's index: through the synset ids when given, and the class names
    (the first index of a name the model lists twice)."""
    lookup: dict[str, int] = {}
    for index, name in enumerate(classes):
        lookup.setdefault(name, index)
    for index, synset in enumerate(synsets or ()):
        lookup[synset] = index
    return lookup


def unknown_class(label: str, classes: Sequence[str]) -> str:
    return (f"unknown class {label!r}: it is none of the model's {len(classes)} classes "
            "(nor a synset of the mapping file)")


def finish(format: str, root: Path, candidates: list[AnnotatedImage | Skipped]) -> AnnotatedDataset:
    """Run :func:`checked` over the readers' candidates, in the order given."""
    images: list[AnnotatedImage] = []
    skipped: list[Skipped] = []
    for candidate in candidates:
        result = checked(candidate) if isinstance(candidate, AnnotatedImage) else candidate
        if isinstance(result, AnnotatedImage):
            images.append(result)
        else:
            skipped.append(result)
    return AnnotatedDataset(format, str(root), images, skipped)


# ---------------------------------------------------------------- ImageNet (localisation layout)

def read_synset_mapping(path: Path) -> list[str]:
    """The synset ids of ``LOC_synset_mapping.txt``, one a line (``n01440764 tench, Tinca tinca``), in order."""
    synsets = [line.split(maxsplit=1)[0] for line in path.read_text().splitlines() if line.strip()]
    if len(set(synsets)) != len(synsets):
        raise ValueError(f"{path} lists a synset twice; it must list each class once, in the model's order")
    return synsets


def imagenet_images_folder(root: Path) -> Path:
    for candidate in IMAGENET_IMAGE_FOLDERS:
        if (root / candidate).is_dir() and (candidate == "." or any((root / candidate).iterdir())):
            return (root / candidate).resolve()
    return root.resolve()


def parse_boxes(text: str) -> list[tuple[str, Box]]:
    """``"n01751748 54 0 374 449 n01751748 ..."`` as ``[(synset, (x0, y0, x1, y1)), ...]``."""
    fields = text.split()
    if not fields or len(fields) % 5:
        raise ValueError(f"expected groups of 'synset x_min y_min x_max y_max', got {text!r}")
    groups = []
    for start in range(0, len(fields), 5):
        synset, *corners = fields[start:start + 5]
        groups.append((synset, tuple(int(float(c)) for c in corners)))
    return groups  # type: ignore[return-value]


def read_imagenet(root, classes: Sequence[str], synsets_file=None, images_folder=None) -> AnnotatedDataset:
    """The ImageNet localisation layout (see the module docstring); ``classes``: the model's categories."""
    root = Path(root)
    solution = root / IMAGENET_SOLUTION
    if not solution.is_file():
        raise FileNotFoundError(f"{solution} is missing: an ImageNet-style folder holds {IMAGENET_SOLUTION} "
                                "(ImageId,PredictionString with 'synset x_min y_min x_max y_max' per box)")
    with open(solution, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ImageId", "PredictionString"} <= set(rows[0]):
        raise ValueError(f"{solution} must have the columns ImageId,PredictionString, got {list(rows[0])}")
    mapping = Path(synsets_file) if synsets_file is not None else root / IMAGENET_SYNSETS
    if mapping.is_file():
        synsets = read_synset_mapping(mapping)
    elif synsets_file is not None:
        raise FileNotFoundError(f"the synset mapping {mapping} does not exist")
    else:
        synsets = sorted({group.split()[0] for row in rows for group in [row["PredictionString"]] if group.split()})
        if len(synsets) != len(classes):
            raise ValueError(f"{root} has no {IMAGENET_SYNSETS} and its solution names {len(synsets)} synsets, not the "
                             f"model's {len(classes)}: add the mapping file (one 'synset name' line per class, in "
                             "the model's order; ImageNet ships it beside the solution) or pass synsets_file")
    if len(synsets) != len(classes):
        raise ValueError(f"{mapping} lists {len(synsets)} synsets but the model has {len(classes)} classes")
    lookup = {synset: index for index, synset in enumerate(synsets)}
    folder = Path(images_folder) if images_folder is not None else imagenet_images_folder(root)
    candidates: list[AnnotatedImage | Skipped] = []
    for row in sorted(rows, key=lambda r: r["ImageId"]):
        image_id, path = row["ImageId"], str(folder / f"{row['ImageId']}{IMAGENET_EXTENSION}")
        try:
            groups = parse_boxes(row["PredictionString"])
        except ValueError as error:
            candidates.append(Skipped(image_id, path, f"bad annotation in {solution.name}: {error}"))
            continue
        label = groups[0][0]
        if label not in lookup:
            candidates.append(Skipped(image_id, path, unknown_class(label, classes)))
            continue
        boxes = tuple(box for synset, box in groups if synset == label)
        candidates.append(AnnotatedImage(image_id, path, label, lookup[label], boxes))
    return finish("imagenet", root, candidates)


# ---------------------------------------------------------------- Pascal VOC

def parse_voc_annotation(path: Path) -> dict:
    """One VOC XML file as torchvision's :meth:`VOCDetection.parse_voc_xml` reads it (``{"annotation": ...}``)."""
    from torchvision.datasets import VOCDetection

    parser = VOCDetection.__new__(VOCDetection)  # the parser needs no dataset on disk
    return parser.parse_voc_xml(ElementTree.parse(path).getroot())


def voc_boxes(annotation: dict) -> list[tuple[str, Box]]:
    """``[(class name, (x0, y0, x1, y1))]`` of a parsed VOC annotation, VOC's 1-based inclusive corners
    turned into 0-based corners with x1/y1 exclusive."""
    objects = annotation.get("object", [])
    objects = objects if isinstance(objects, list) else [objects]
    boxes = []
    for entry in objects:
        corners = entry["bndbox"]
        x0, y0, x1, y1 = (int(float(corners[key])) for key in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((entry["name"], (x0 - 1, y0 - 1, x1, y1)))
    return boxes


def image_class_from_boxes(boxes: list[tuple[str, Box]]) -> str:
    """The class of the largest box (the first of equal ones): a VOC image's label."""
    def area(box):
        x0, y0, x1, y1 = box
        return (x1 - x0) * (y1 - y0)

    return max(enumerate(boxes), key=lambda item: (area(item[1][1]), -item[0]))[1][0]


def read_voc(root, classes: Sequence[str], synsets_file=None) -> AnnotatedDataset:
    """Pascal VOC's layout: ``Annotations/*.xml`` naming images of ``JPEGImages/``."""
    root = Path(root)
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise FileNotFoundError(f"{annotations} is missing: a VOC-style folder holds Annotations/ (one XML per "
                                "image) and JPEGImages/")
    lookup = class_lookup(classes, read_synset_mapping(Path(synsets_file)) if synsets_file else None)
    candidates: list[AnnotatedImage | Skipped] = []
    for xml_path in sorted(annotations.glob("*.xml")):
        image_id = xml_path.stem
        try:
            annotation = parse_voc_annotation(xml_path)["annotation"]
            path = str(root / "JPEGImages" / annotation.get("filename", f"{image_id}.jpg"))
            boxes = voc_boxes(annotation)
            if not boxes:
                raise ValueError("it has no <object>")
        except (ElementTree.ParseError, KeyError, ValueError, TypeError) as error:
            candidates.append(Skipped(image_id, str(xml_path), f"bad annotation: {type(error).__name__}: {error}"))
            continue
        label = image_class_from_boxes(boxes)
        if label not in lookup:
            candidates.append(Skipped(image_id, path, unknown_class(label, classes)))
            continue
        own = tuple(box for name, box in boxes if name == label)
        candidates.append(AnnotatedImage(image_id, path, label, lookup[label], own))
    return finish("voc", root, candidates)


# ---------------------------------------------------------------- class-per-folder

def read_folder(root, classes: Sequence[str], synsets_file=None) -> AnnotatedDataset:
    """:class:`torchvision.datasets.ImageFolder`'s layout: ``root/CLASS/image``; no boxes."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"the dataset folder {root} does not exist")
    folders, folder_index = find_classes(str(root))
    samples = make_dataset(str(root), folder_index, extensions=IMG_EXTENSIONS, allow_empty=True)
    lookup = class_lookup(classes, read_synset_mapping(Path(synsets_file)) if synsets_file else None)
    candidates: list[AnnotatedImage | Skipped] = []
    for path, index in samples:
        label = folders[index]
        image_id = str(Path(path).relative_to(root).with_suffix(""))
        if label not in lookup:
            candidates.append(Skipped(image_id, path, unknown_class(label, classes)))
        else:
            candidates.append(AnnotatedImage(image_id, path, label, lookup[label], None))
    return finish("folder", root, candidates)


READERS = {"imagenet": read_imagenet, "voc": read_voc, "folder": read_folder}


def read_dataset(root, format: str, classes: Sequence[str], synsets_file=None) -> AnnotatedDataset:
    """A dataset in ``format`` (one of :data:`FORMATS`) for a model whose categories are ``classes``."""
    if format not in READERS:
        raise ValueError(f"unknown dataset format {format!r}; choose one of {list(FORMATS)}")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"the dataset folder {root} does not exist")
    return READERS[format](root, list(classes), synsets_file)


# ---------------------------------------------------------------- pixels

def load_pixels(image: AnnotatedImage) -> Image.Image:
    """The image as an RGB PIL image, fully decoded; an :class:`UnreadableImage` if it cannot be
    (the message says why; :meth:`Skipped.line` adds the file)."""
    try:
        with Image.open(image.path) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise UnreadableImage(f"cannot be decoded ({error})") from None


def transformed(image: AnnotatedImage, transform) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(pixels (3, H, W) float in [0, 1], boxes (n, 4) long or None)`` after ``transform``.

    ``transform`` is a :mod:`torchvision.transforms.v2` pipeline; it moves the boxes with the
    pixels (a resize scales them, a crop shifts and clips them); a box the crop removes
    entirely is dropped, so ``boxes`` may have no rows.
    """
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    pixels = load_pixels(image)
    width, height = pixels.size
    if image.boxes is None:
        out = transform(pixels)
        return TF.to_dtype(TF.to_image(out), torch.float32, scale=True), None
    boxes = tv_tensors.BoundingBoxes(torch.tensor(image.boxes, dtype=torch.float64), format="XYXY",
                                     canvas_size=(height, width))
    out, moved = transform(pixels, boxes)
    pixels_out = TF.to_dtype(TF.to_image(out), torch.float32, scale=True)
    size = pixels_out.shape[-2:]
    corners = torch.as_tensor(np.round(moved.as_subclass(torch.Tensor).numpy())).long()
    corners[:, 0::2] = corners[:, 0::2].clamp(0, size[1])
    corners[:, 1::2] = corners[:, 1::2].clamp(0, size[0])
    keep = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    return pixels_out, corners[keep]
