"""The small bundled dataset, written in every format from what camsurvey already ships.

``write_sample(FOLDER)`` writes two datasets, each in the three layouts of
:mod:`camsurvey.datasets.annotated` (the same image files and the same boxes in each):

* ``photos/``: the five bundled photos with their ImageNet class and the box of
  ``data/photos.json`` (drawn by eye), for the ImageNet models;
* ``scenes/``: scenes of the scenario dataset (:mod:`camsurvey.datasets.scenes`; one object, or
  several of one class) with their exact boxes, for the scene models.

Each of them holds ``imagenet/`` (``LOC_val_solution.csv``, ``LOC_synset_mapping.txt``,
``val/*.JPEG``), ``voc/`` (``Annotations/*.xml``, ``JPEGImages/*.jpg``) and ``folder/`` (one
folder per class). The synset ids are placeholders (``cs00285`` for class 285): ImageNet's
WordNet ids do not ship with camsurvey, and the mapping file is what ties an id to a class.
No ImageNet image is used or downloaded. ``python -m camsurvey.lab.evaluate.sample FOLDER``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
from PIL import Image

from ...datasets import scenes
from ...files import check_output, write_file
from ...images import photo_annotations, read_photo
from ...models import imagenet_categories

SCENARIOS = ("large", "small", "same")  # every object of a scene has the target's class
JPEG_QUALITY = 95


def synset_id(index: int) -> str:
    """The placeholder synset id of class ``index`` (see the module docstring)."""
    return f"cs{index:05d}"


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def voc_xml(filename: str, width: int, height: int, objects) -> str:
    """A VOC annotation; ``objects``: ``[(name, (x0, y0, x1, y1))]`` with x1/y1 exclusive, written 1-based inclusive."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = filename
    size = ElementTree.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, key).text = str(value)
    for name, (x0, y0, x1, y1) in objects:
        entry = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(entry, "name").text = name
        ElementTree.SubElement(entry, "difficult").text = "0"
        box = ElementTree.SubElement(entry, "bndbox")
        for key, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ElementTree.SubElement(box, key).text = str(value)
    return ElementTree.tostring(root, encoding="unicode")


def write_formats(folder: Path, items, categories, force: bool) -> None:
    """``items``: ``[(image id, pixels (h, w, 3) uint8, class index, [boxes])]``, written in every layout."""
    solution = io.StringIO()
    writer = csv.writer(solution, lineterminator="\n")
    writer.writerow(["ImageId", "PredictionString"])
    for image_id, pixels, class_index, boxes in items:
        data = jpeg_bytes(pixels)
        height, width = pixels.shape[:2]
        name = categories[class_index]
        write_file(folder / "imagenet" / "val" / f"{image_id}.JPEG", data, force=force)
        write_file(folder / "voc" / "JPEGImages" / f"{image_id}.jpg", data, force=force)
        write_file(folder / "voc" / "Annotations" / f"{image_id}.xml",
                   voc_xml(f"{image_id}.jpg", width, height, [(name, box) for box in boxes]), force=force)
        write_file(folder / "folder" / name / f"{image_id}.jpg", data, force=force)
        writer.writerow([image_id, " ".join(f"{synset_id(class_index)} {x0} {y0} {x1} {y1}"
                                            for x0, y0, x1, y1 in boxes)])
    write_file(folder / "imagenet" / "LOC_val_solution.csv", solution.getvalue(), force=force)
    write_file(folder / "imagenet" / "LOC_synset_mapping.txt",
               "".join(f"{synset_id(i)} {name}\n" for i, name in enumerate(categories)), force=force)


def photo_items() -> list:
    return [(name, read_photo(name), entry["class_index"], [tuple(entry["box"])])
            for name, entry in photo_annotations().items()]


def scene_items(count: int, size: int, seed: int) -> list:
    """``count`` scenes spread over :data:`SCENARIOS`, with the boxes of every object (all of the target's class)."""
    items = []
    per = [count // len(SCENARIOS) + (k < count % len(SCENARIOS)) for k in range(len(SCENARIOS))]
    for scenario, n in zip(SCENARIOS, per):
        if n == 0:
            continue
        batch = scenes.generate(scenario, n, seed=seed, size=size)
        for i in range(n):
            pixels = (batch.images[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            boxes = [tuple(b) for b, c in zip(batch.boxes[i].tolist(), batch.object_classes[i].tolist()) if c >= 0]
            items.append((f"{scenario}_{i:04d}", pixels, int(batch.labels[i]), boxes))
    return items


def write_sample(folder, *, scene_count: int = 300, size: int = 64, seed: int = 0, photos: bool = True,
                 force: bool = False) -> dict[str, Path]:
    """Write the sample datasets into ``folder``; returns ``{"photos": path, "scenes": path}``."""
    folder = check_output(folder, what="sample dataset folder")
    written = {}
    if photos:
        write_formats(folder / "photos", photo_items(), list(imagenet_categories()), force)
        written["photos"] = folder / "photos"
    if scene_count:
        write_formats(folder / "scenes", scene_items(scene_count, size, seed), list(scenes.CLASSES), force)
        written["scenes"] = folder / "scenes"
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camsurvey.lab.evaluate.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where to write photos/ and scenes/")
    parser.add_argument("--scenes", type=int, default=300, help="how many scenes (default 300)")
    parser.add_argument("--size", type=int, default=64, help="side of a scene in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace files written before")
    args = parser.parse_args(argv)
    try:
        for name, path in write_sample(args.folder, scene_count=args.scenes, size=args.size, seed=args.seed,
                                       force=args.force).items():
            print(f"wrote {name}: {path}")
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
