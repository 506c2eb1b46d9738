"""Our methods against their authors' algorithms (issue 17), on EfficientNet-Lite0 and the scene CNN.

The oracles are :mod:`camsurvey.lab.faithfulness`: the authors' algorithms written again from
their code and papers, step by step and independently of :mod:`camsurvey.methods`. Where we
follow the authors, a test asks for Pearson >= 0.999 and a largest difference of the
normalised maps <= 1e-5; where a variant of ours departs from them, a test shows that it does,
so that the agreement means something. The photos are small (96 or 128 pixels) or few, and
the step counts low, to keep the file within seconds per test; the definitions do not depend
on them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import camsurvey as cs
from camsurvey.datasets import scenes
from camsurvey.lab import faithfulness as fa
from camsurvey.methods import helpers, perturbation
from camsurvey.methods import smoothing as sm

CLOSE = dict(pearson=0.999, max_abs=1e-5)


def assert_follows(ours, theirs):
    measured = fa.agreement(ours, theirs)
    assert measured.pearson >= CLOSE["pearson"] and measured.max_abs <= CLOSE["max_abs"], measured


def resized(images, size):
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def photos2():
    return cs.load_images(["chelsea", "rocket"])


@pytest.fixture(scope="module")
def scene_model():
    return cs.load_model("scenes_cnn")


@pytest.fixture(scope="module")
def scene_images():
    return scenes.generate("multi_label", 3, seed=0).images


# --- the oracles themselves ---------------------------------------------------------------------

def test_the_authors_gaussian_mosaic_copies_the_centre_vector_into_the_cropped_filter():
    features = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3) + 1
    mosaic = fa.reciprocam_mosaic_authors(features, gaussian=True)
    centre = mosaic[4]  # position (1, 1)
    assert torch.allclose(centre[0], features[0, 1, 1] * torch.tensor(fa.RECIPROCAM_FILTER))
    corner = mosaic[0]  # position (0, 0): the filter cut at the border
    assert corner[1, 0, 0] == features[1, 0, 0] / 4 and corner[1, 1, 1] == features[1, 0, 0] / 16
    assert corner[:, 2].abs().sum() == 0 and corner[:, :, 2].abs().sum() == 0
    point = fa.reciprocam_mosaic_authors(features, gaussian=False)
    assert torch.equal(point[5].sum(dim=(1, 2)), features[:, 1, 2])


def test_agreement_is_scale_free_and_can_fail():
    maps = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert fa.agreement(maps, 3 * maps + 1).max_abs < 1e-12
    other = fa.agreement(maps, maps.flip(-1))
    assert other.pearson < 0.9 and other.max_abs > 0.1
    assert fa.format_bound(3e-7) == "< 1e-06" and fa.format_bound(0.0) == "0" and fa.format_bound(0.25) == "0.25"
    assert fa.format_ceiling(0.3) == "< 0.5" and fa.format_ceiling(0.995) == "0.995" and fa.format_ceiling(1.0) == "> 0.9999"
    assert fa.format_magnitude(1337.0) == "> 1e+03"


# --- Recipro-CAM (sybyun/ReciproCAM) ------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["point", "gaussian"])
def test_reciprocam_follows_the_authors_code_on_efficientnet_lite0(model, photos2, kernel):
    ours, _ = cs.METHODS["reciprocam"].function(model, photos2, None, None, kernel=kernel)
    assert_follows(ours, fa.reciprocam_authors(model, photos2, gaussian=kernel == "gaussian"))


@pytest.mark.parametrize("kernel", ["point", "gaussian"])
def test_reciprocam_follows_the_authors_code_on_the_scene_cnn(scene_model, scene_images, kernel):
    ours, _ = cs.METHODS["reciprocam"].function(scene_model, scene_images, None, None, kernel=kernel)
    assert_follows(ours, fa.reciprocam_authors(scene_model, scene_images, gaussian=kernel == "gaussian"))


def test_reciprocam_defaults_to_the_authors_point_mask():
    assert cs.METHODS["reciprocam"].params["kernel"] == "point"


def test_our_gaussian_window_is_not_the_authors_gaussian(model, photos2):
    ours, _ = cs.METHODS["reciprocam"].function(model, photos2, None, None, kernel="gaussian-window")
    assert fa.agreement(ours, fa.reciprocam_authors(model, photos2, gaussian=True)).pearson < 0.99


# --- Integrated Grad-CAM (smstrzd/IntegratedGradCAM) ----------------------------------------------

@pytest.mark.parametrize("layer, subtract", [(None, False), ("block10", False), ("block10", True)])
def test_integrated_gradcam_follows_the_authors_code_on_efficientnet_lite0(model, photos2, layer, subtract):
    images = resized(photos2, 96)
    ours, _ = cs.METHODS["integrated-gradcam"].function(model, images, None, layer, steps=4, subtract_baseline=subtract)
    assert_follows(ours, fa.integrated_gradcam_authors(model, images, None, layer, steps=4, subtract_baseline=subtract))


@pytest.mark.parametrize("subtract", [False, True])
def test_integrated_gradcam_follows_the_authors_code_on_the_scene_cnn(scene_model, scene_images, subtract):
    ours, _ = cs.METHODS["integrated-gradcam"].function(scene_model, scene_images, None, "block4", steps=8,
                                                        subtract_baseline=subtract)
    assert_follows(ours, fa.integrated_gradcam_authors(scene_model, scene_images, None, "block4", steps=8,
                                                       subtract_baseline=subtract))


def test_integrated_gradcam_is_not_gradcam_even_where_the_gradient_is_constant(model, photos2):
    """After conv_head dy/dA does not depend on the input, yet the authors' functional sums maps of
    the activations along the path, so it is not Grad-CAM there (the former reading was)."""
    images = resized(photos2, 128)
    integrated = cs.explain("integrated-gradcam", model, images, steps=6)
    gradcam = cs.explain("gradcam", model, images)
    assert fa.agreement(integrated, gradcam).max_abs > 1e-3


# --- IS-CAM (Naidu et al., torchcam#13) ------------------------------------------------------------

def test_iscam_follows_the_authors_accumulated_scales_and_our_variant_does_not(model):
    image = resized(cs.load_images(["chelsea"]), 64)
    theirs = fa.iscam_authors(model, image, None, "block0", steps=3)
    ours, _ = cs.METHODS["iscam"].function(model, image, None, "block0", steps=3)
    measured = fa.agreement(ours, theirs)
    assert measured.pearson >= 0.999 and measured.max_abs <= 1e-4, measured  # scores summed in other batches
    variant, _ = cs.METHODS["iscam"].function(model, image, None, "block0", steps=3, accumulate=False)
    assert fa.agreement(variant, theirs).max_abs > 1e-2
    assert torch.allclose(sm.iscam_scales(4), torch.tensor([0.25, 0.75, 1.5, 2.5]))


# --- Grad-CAM++ (the closed form) ----------------------------------------------------------------

@pytest.mark.parametrize("layer", [None, "stem"])
def test_gradcampp_is_the_papers_closed_form(model, photos2, layer):
    ours, _ = cs.METHODS["gradcam++"].function(model, photos2, None, layer)
    assert_follows(ours, fa.gradcampp_authors(model, photos2, None, layer))


# --- Smooth Grad-CAM++: the guarded denominator ---------------------------------------------------

def test_smoothgradcampp_guard_makes_a_tiny_change_of_noise_a_tiny_change_of_map(model, photos2):
    stability = fa.smoothgradcampp_stability(model, photos2[:1], "stem", sigma=0.3, samples=4)
    assert stability.guarded_self >= 0.999
    assert stability.unguarded_self < 0.99  # without the guard the map jumps for some of the tiny factors
    assert stability.non_positive_share > 0.01 and stability.largest_alpha > 100


def test_smoothgradcampp_guard_changes_nothing_for_one_copy_after_a_relu(model, photos2):
    ours, _ = cs.METHODS["smoothgradcam++"].function(model, photos2[:1], None, "stem", samples=1, sigma=0.0)
    assert_follows(ours, fa.gradcampp_authors(model, photos2[:1], None, "stem"))


# --- EVET: transformations that keep the prediction -----------------------------------------------

def test_evet_default_transformations_keep_the_top1_class_on_every_bundled_photo(model, photos):
    with torch.no_grad():
        top1 = model(photos).argmax(dim=1)
        for transform in helpers.resolve_transforms(helpers.EVET_TRANSFORMS):
            assert torch.equal(model(transform.forward(photos)).argmax(dim=1), top1), transform.name


def test_evet_weights_each_copy_by_the_class_probability_on_it(model, photos2):
    target = torch.tensor([285, 285])
    transforms = ("identity", "rot90")
    probabilities = helpers.transformed_class_probabilities(model, photos2, transforms, target)
    maps = torch.stack([cs.explain("gradcam", model, photos2, target=target),
                        torch.rot90(cs.explain("gradcam", model, torch.rot90(photos2, 1, (-2, -1)), target=target),
                                    -1, (-2, -1))])
    expected = (probabilities[..., None, None] * maps).sum(0) / probabilities.sum(0)[..., None, None]
    fused = cs.explain("evet", model, photos2, target=target, transforms=transforms)
    assert torch.allclose(fused, cs.plumbing.normalize(expected), atol=1e-5)  # explain's final min-max scaling


def test_reciprocam_kernels_are_the_documented_ones():
    assert set(perturbation.RECIPROCAM_KERNELS) == {"point", "gaussian", "gaussian-window"}


# --- the metrics' official code -------------------------------------------------------------------

def test_the_official_coherency_of_a_constant_map_is_nan_where_ours_is_zero(model):
    constant = torch.ones(1, 64, 64)
    assert fa.coherency_official(constant, constant) != fa.coherency_official(constant, constant)  # NaN
    image = resized(cs.load_images(["coffee"]), 64)
    assert cs.metrics.coherency(model, image, constant, lambda x, t: constant).mean == 0.0
    maps = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(3))
    ours = cs.metrics.coherency(model, image, maps[:1], lambda x, t: maps[1:]).mean
    assert ours == pytest.approx(fa.coherency_official(maps[0], maps[1]), abs=1e-6)  # elsewhere the same


def test_rise_blur_is_nearly_a_box_filter_and_fades_the_border_to_the_mean_colour(model):
    kernel = fa.rise_blur_kernel()
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert kernel.max() / kernel.min() < 1.2  # a Gaussian with sigma 5 over 11 pixels would give e = 2.7
    white = torch.ones(1, 3, 64, 64)
    start = fa.rise_insertion_start(model, white)
    mean = model[0].mean.view(3)
    assert torch.allclose(start[0, :, 32, 32], torch.ones(3))  # far from the border: the image itself
    corner = start[0, :, 0, 0]
    assert (corner < 1).all() and (corner > mean).all()  # the zero padding of the normalised image is the mean
    assert torch.equal(fa.rise_deletion_end(model, white)[0, :, 5, 5], mean)


# --- the chapters' tables -------------------------------------------------------------------------

def test_the_cam_chapters_table_reads_follows_where_we_follow_and_differs_where_we_do_not(model):
    images = resized(cs.load_images(["chelsea"]), 96)
    rows = fa.cams_rows(model, images)
    for row in rows:
        ours_variant, peer = "(ours)" in row.ours, "pytorch-grad-cam" in row.theirs
        if not ours_variant and not peer:  # we follow the authors: float rounding only
            assert row.measured.startswith("Pearson > 0.9999"), row
        if ours_variant or (peer and "stem" in row.ours):  # where we depart, the table shows it
            assert not row.measured.startswith("Pearson > 0.9"), row
    table = fa.format_rows(rows)
    assert table.splitlines()[0].split() == ["ours", "the", "authors'", "(or", "the", "reference)", "measured"]
    assert len(table.splitlines()) == len(rows) + 1


def test_provenance_rows_name_every_methods_source_without_its_details():
    rows = fa.provenance_rows(["reciprocam", "evet"])
    assert rows[0] == fa.Row("reciprocam", "the authors' code", "sybyun/ReciproCAM, src/recipro_cam.py", "")
    assert rows[1].ours == "our reading"


# --- CUDA ---------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("method, params", [
    ("reciprocam", {"kernel": "gaussian"}), ("reciprocam", {"kernel": "gaussian-window"}),
    ("integrated-gradcam", {"steps": 4, "subtract_baseline": True}), ("iscam", {"steps": 2, "layer": "block0"}),
    ("sscam", {"samples": 2, "sigma": 0.1, "noise": "input", "layer": "block0"}),
    ("smoothgradcam++", {"samples": 2, "layer": "stem"}), ("evet", {}),
])
def test_the_changed_methods_run_on_cuda_and_give_the_cpu_maps(method, params):
    cpu_model = cs.load_model("efficientnet_lite0", device="cpu")
    gpu_model = cs.load_model("efficientnet_lite0", device="cuda")
    images = resized(cs.load_images(["chelsea"]), 96)
    on_cpu = cs.explain(method, cpu_model, images, **params)
    on_gpu = cs.explain(method, gpu_model, images.cuda(), **params)
    assert on_gpu.device.type == "cuda"
    assert fa.agreement(on_gpu, on_cpu).pearson >= 0.99
