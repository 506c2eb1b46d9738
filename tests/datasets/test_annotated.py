"""The dataset readers: ImageNet's localisation layout, Pascal VOC and class-per-folder trees."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

import camsurvey as cs
from camsurvey.datasets import annotated
from camsurvey.datasets.scenes import CLASSES
from camsurvey.lab.evaluate import protocol
from camsurvey.lab.evaluate.sample import synset_id, voc_xml, write_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("sample") / "data", scene_count=9)


def read(folder, fmt, classes):
    return annotated.read_dataset(folder / fmt, fmt, classes)


@pytest.mark.parametrize("which", ["photos", "scenes"])
def test_imagenet_voc_and_folder_layouts_parse_to_the_same_images_classes_and_boxes(sample, which):
    classes = list(cs.imagenet_categories()) if which == "photos" else list(CLASSES)
    imagenet, voc, folder = (read(sample[which], fmt, classes) for fmt in annotated.FORMATS)
    assert not imagenet.skipped and not voc.skipped and not folder.skipped
    assert len(imagenet) == (5 if which == "photos" else 9)
    as_rows = [(i.image_id, i.class_index, i.boxes) for i in imagenet.images]
    assert as_rows == [(i.image_id, i.class_index, i.boxes) for i in voc.images]
    by_id = {i.image_id.split("/")[-1]: i for i in folder.images}
    assert sorted(by_id) == sorted(i.image_id for i in imagenet.images)
    assert all(by_id[i.image_id].class_index == i.class_index and by_id[i.image_id].boxes is None
               for i in imagenet.images)
    assert [torch.equal(annotated.transformed(i, protocol().transform())[0],
                        annotated.transformed(j, protocol().transform())[0])
            for i, j in zip(imagenet.images, voc.images)] == [True] * len(imagenet)
    if which == "photos":  # the annotations of data/photos.json, in the original pixels
        chelsea = next(i for i in voc.images if i.image_id == "chelsea")
        assert chelsea.boxes == (tuple(cs.photo_annotations()["chelsea"]["box"]),)
        assert cs.imagenet_categories()[chelsea.class_index] == "Egyptian cat"


def test_the_book_protocol_prepares_a_photo_exactly_as_load_image_and_load_box(sample):
    dataset = read(sample["photos"], "voc", list(cs.imagenet_categories()))
    chelsea = next(i for i in dataset.images if i.image_id == "chelsea")
    pixels, boxes = annotated.transformed(chelsea, protocol("camsurvey").transform())
    # the sample stores JPEGs, so compare the boxes exactly and the pixels to the JPEG's rounding
    assert boxes.tolist() == [list(cs.load_box("chelsea"))]
    assert pixels.shape == (3, 224, 224)
    assert (pixels - cs.load_image("chelsea")[0]).abs().mean() < 0.02


def test_a_box_moves_with_the_resize_and_centre_crop_of_the_paper_protocol(tmp_path):
    folder = tmp_path / "voc"
    (folder / "JPEGImages").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    from PIL import Image

    Image.new("RGB", (512, 256)).save(folder / "JPEGImages" / "a.jpg")
    # (x0, y0, x1, y1) = (0, 0, 256, 128) and a box the crop removes entirely
    (folder / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 512, 256, [("disc", (0, 0, 256, 128)),
                                                                          ("disc", (0, 200, 10, 256))]))
    image = annotated.read_voc(folder, CLASSES).images[0]
    _, boxes = annotated.transformed(image, protocol("recipro-cam-paper").transform())
    # Resize to 256 x 256 halves x: (0, 0, 128, 128); CenterCrop(224) shifts by 16: (-16, -16, 112, 112) -> clipped
    assert boxes.tolist() == [[0, 0, 112, 112]]


def test_a_voc_image_takes_the_class_of_its_largest_box_and_keeps_that_class_s_boxes(tmp_path):
    boxes = [("disc", (0, 0, 10, 10)), ("star", (5, 5, 40, 40)), ("disc", (30, 30, 60, 60)), ("star", (1, 1, 3, 3))]
    assert annotated.image_class_from_boxes(boxes) == "star"
    folder = tmp_path / "voc"
    (folder / "JPEGImages").mkdir(parents=True)
    (folder / "Annotations").mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64)).save(folder / "JPEGImages" / "a.jpg")
    (folder / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", 64, 64, boxes))
    image = annotated.read_voc(folder, CLASSES).images[0]
    assert (image.label, image.class_index, image.boxes) == ("star", CLASSES.index("star"), ((5, 5, 40, 40), (1, 1, 3, 3)))


def broken_copy(sample, tmp_path, fmt):
    """The scene sample in ``fmt`` with four bad images: missing, box outside, unknown class, unreadable."""
    folder = tmp_path / fmt
    shutil.copytree(sample["scenes"] / fmt, folder)
    if fmt == "imagenet":
        solution = folder / "LOC_val_solution.csv"
        rows = [[image_id, f"{synset_id(3)} 0 0 65 30" if image_id == "large_0000" else boxes]
                for image_id, boxes in csv.reader(solution.open())]
        rows += [["gone", f"{synset_id(0)} 1 1 5 5"], ["alien", "n99999999 1 1 5 5"],
                 ["garbage", f"{synset_id(0)} 1 1 5 5"]]
        shutil.copy(folder / "val" / "small_0000.JPEG", folder / "val" / "alien.JPEG")
        (folder / "val" / "garbage.JPEG").write_bytes(b"not an image")
        with solution.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        return folder, {"gone": "does not exist", "large_0000": "lies outside the 64 x 64 image",
                        "alien": "unknown class 'n99999999'", "garbage": "not an image PIL can read"}
    annotations = folder / "Annotations"
    (annotations / "gone.xml").write_text(voc_xml("gone.jpg", 64, 64, [("disc", (1, 1, 5, 5))]))
    (annotations / "large_0000.xml").write_text(voc_xml("large_0000.jpg", 64, 64, [("square", (0, 0, 65, 30))]))
    shutil.copy(folder / "JPEGImages" / "small_0000.jpg", folder / "JPEGImages" / "alien.jpg")
    (annotations / "alien.xml").write_text(voc_xml("alien.jpg", 64, 64, [("hexagon", (1, 1, 5, 5))]))
    (folder / "JPEGImages" / "garbage.jpg").write_bytes(b"not an image")
    (annotations / "garbage.xml").write_text(voc_xml("garbage.jpg", 64, 64, [("disc", (1, 1, 5, 5))]))
    return folder, {"gone": "does not exist", "large_0000": "lies outside the 64 x 64 image",
                    "alien": "unknown class 'hexagon'", "garbage": "not an image PIL can read"}


@pytest.mark.parametrize("fmt", ["imagenet", "voc"])
def test_every_bad_annotation_gives_one_line_naming_the_file_and_a_skipped_record(sample, tmp_path, fmt):
    folder, expected = broken_copy(sample, tmp_path, fmt)
    dataset = annotated.read_dataset(folder, fmt, CLASSES)
    reasons = {s.image_id: s for s in dataset.skipped}
    assert sorted(reasons) == sorted(expected)
    for image_id, words in expected.items():
        line = reasons[image_id].line()
        assert "\n" not in line and words in line and image_id in line, line
    assert len(dataset) == 8  # the nine scenes but the one whose box was made to stick out


def test_a_folder_tree_has_no_boxes_and_skips_a_folder_of_an_unknown_class(sample, tmp_path):
    folder = tmp_path / "folder"
    shutil.copytree(sample["scenes"] / "folder", folder)
    (folder / "hexagon").mkdir()
    shutil.copy(next((folder / "disc").glob("*.jpg")), folder / "hexagon" / "h.jpg")
    dataset = annotated.read_dataset(folder, "folder", CLASSES)
    assert not dataset.has_boxes and all(i.boxes is None for i in dataset.images)
    assert [s.image_id for s in dataset.skipped] == ["hexagon/h"]
    assert "unknown class 'hexagon'" in dataset.skipped[0].line()


def test_a_truncated_image_is_refused_when_decoded_with_a_message_not_a_traceback(sample, tmp_path):
    source = next((sample["scenes"] / "voc" / "JPEGImages").glob("*.jpg"))
    cut = tmp_path / "cut.jpg"
    data = source.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    image = annotated.AnnotatedImage("cut", str(cut), "disc", 0, None)
    assert isinstance(annotated.checked(image), annotated.AnnotatedImage)  # the header reads fine
    with pytest.raises(annotated.UnreadableImage, match="cannot be decoded"):
        annotated.load_pixels(image)


def test_missing_annotation_files_and_unknown_formats_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"LOC_val_solution\.csv"):
        annotated.read_dataset(tmp_path, "imagenet", CLASSES)
    with pytest.raises(FileNotFoundError, match="Annotations"):
        annotated.read_dataset(tmp_path, "voc", CLASSES)
    with pytest.raises(ValueError, match="choose one of"):
        annotated.read_dataset(tmp_path, "coco", CLASSES)
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\na,n1 0 0 1 1\n")
    with pytest.raises(ValueError, match=r"LOC_synset_mapping\.txt"):
        annotated.read_dataset(tmp_path, "imagenet", CLASSES)


def test_without_a_mapping_file_the_synsets_are_numbered_in_sorted_order(tmp_path):
    from PIL import Image

    (tmp_path / "val").mkdir()
    rows = ["ImageId,PredictionString"]
    for k, synset in enumerate(["n6", "n1", "n5", "n2", "n4", "n3"]):
        Image.new("RGB", (40, 40)).save(tmp_path / "val" / f"i{k}.JPEG")
        rows.append(f"i{k},{synset} 0 0 40 40")
    (tmp_path / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    dataset = annotated.read_dataset(tmp_path, "imagenet", CLASSES)
    assert [(i.label, i.class_index) for i in dataset.images] == [("n6", 5), ("n1", 0), ("n5", 4), ("n2", 1),
                                                                   ("n4", 3), ("n3", 2)]
