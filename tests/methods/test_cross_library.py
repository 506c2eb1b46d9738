"""Our methods against pytorch-grad-cam and torchcam: same model, same layer, same target.

The peers are test oracles only. How we compare fairly:

* torchcam returns the raw low-resolution map (``normalized=False``); we compare it with
  the raw map our method function returns, before any post-processing.
* pytorch-grad-cam returns ``resize(norm(ReLU(map)))`` at the input size; ``explain`` returns
  ``norm(up(map))``. Bilinear resizing is linear and both use half-pixel centres (OpenCV's
  INTER_LINEAR, ``align_corners=False``), so resizing before or after the min-max scaling
  differs only by an affine map, to which Pearson's correlation is blind. We compare the
  two final maps.

Where a peer differs, a test shows why. The slow methods (Score-CAM, Ablation-CAM: one pass
per channel) are compared at the layer "stem" (32 channels) on one photo at 96 x 96.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import camsurvey as cs
from camsurvey.methods import gradient, perturbation
from camsurvey.plumbing import forward_activations, forward_and_backward

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
from oracles import pearson  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

PHOTOS = ["chelsea", "coffee"]
FEW_CHANNELS = "stem"


@pytest.fixture(scope="module")
def model():
    return cs.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def images():
    return cs.load_images(PHOTOS)


@pytest.fixture(scope="module")
def small():
    """One photo at 96 x 96 for the methods that cost one full forward pass per channel."""
    return cs.load_images(PHOTOS[:1], size=96)


@pytest.fixture(scope="module")
def targets(model, images):
    with torch.no_grad():
        return model(images).argmax(dim=1)


def run_pytorch_grad_cam(peer, model, images, targets, layer, **options):
    """The peer's final maps (B, H, W). Its input must require gradients: our model is frozen."""
    with peer(model=model, target_layers=[model.layer(layer)], **options) as cam:
        cam.batch_size = 32  # the batch Score-CAM and Ablation-CAM use (speed only)
        maps = cam(input_tensor=images.clone().requires_grad_(True),
                   targets=[ClassifierOutputTarget(int(c)) for c in targets])
    return torch.from_numpy(np.asarray(maps))


def run_torchcam(peer, model, images, targets, layer, gradients=True, **options):
    """The peer's raw low-resolution maps (B, h, w), not normalised."""
    with peer(model, target_layer=layer, **options) as extractor:
        scores = model(images.clone().requires_grad_(gradients))
        return extractor(targets.tolist(), scores, normalized=False)[0].detach()


# --- pytorch-grad-cam -----------------------------------------------------------------------

@pytest.mark.parametrize("name, peer", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                        ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM")])
def test_gradient_methods_match_pytorch_grad_cam(name, peer, model, images, targets):
    theirs = run_pytorch_grad_cam(getattr(pytorch_grad_cam, peer), model, images, targets, "conv_head")
    ours = cs.explain(name, model, images, target=targets)
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99, (name, PHOTOS[b])


def test_hirescam_matches_pytorch_grad_cam_where_it_differs_from_gradcam(model, images, targets):
    """At block15 (before the 1x1 head convolution) HiResCAM and Grad-CAM part ways; the peer agrees with ours."""
    theirs = run_pytorch_grad_cam(pytorch_grad_cam.HiResCAM, model, images, targets, "block15")
    ours = cs.explain("hirescam", model, images, target=targets, layer="block15")
    gradcam = cs.explain("gradcam", model, images, target=targets, layer="block15")
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99, PHOTOS[b]
    # the agreement means something: Grad-CAM, a different map here, would not pass it
    assert min(pearson(ours[b], gradcam[b]) for b in range(len(images))) < 0.99


def test_eigencam_matches_pytorch_grad_cam_up_to_the_sign_of_the_svd(model, images, targets):
    from camsurvey.methods.activation import first_principal_component
    from camsurvey.plumbing import forward_activations

    activations, _ = forward_activations(model, images, None)
    ours = first_principal_component(activations)
    theirs = torch.from_numpy(get_2d_projection(activations.numpy().copy()))
    ours_final = cs.explain("eigencam", model, images)
    peer_final = run_pytorch_grad_cam(pytorch_grad_cam.EigenCAM, model, images, targets, "conv_head")
    for b in range(len(images)):
        agreement = pearson(ours[b], theirs[b])
        assert abs(agreement) >= 0.999  # the same principal direction; an SVD may flip its sign
        if agreement > 0:  # the peer leaves the sign to the SVD; we fix it (see first_principal_component)
            assert pearson(ours_final[b], peer_final[b]) >= 0.99


def test_ablationcam_matches_pytorch_grad_cam(model, small, targets):
    theirs = run_pytorch_grad_cam(pytorch_grad_cam.AblationCAM, model, small, targets[:1], FEW_CHANNELS)
    ours = cs.explain("ablationcam", model, small, target=targets[:1], layer=FEW_CHANNELS)
    assert pearson(ours[0], theirs[0]) >= 0.99


def test_scorecam_differs_from_pytorch_grad_cam_only_by_its_mask_upsampling(model, small, targets):
    """The peer upsamples A^n with align_corners=True (we, like torchcam: False) and keeps
    constant channels as all-black masks. Our eq. (4) agrees with it to about 0.98; the same
    building blocks with the peer's upsampling agree with it to 0.999."""
    theirs = run_pytorch_grad_cam(pytorch_grad_cam.ScoreCAM, model, small, targets[:1], FEW_CHANNELS)
    ours = cs.explain("scorecam", model, small, target=targets[:1], layer=FEW_CHANNELS, batch_size=32)
    activations, scores = forward_activations(model, small, FEW_CHANNELS)
    upsampled = F.interpolate(activations, size=small.shape[-2:], mode="bilinear", align_corners=True)[0]
    low, high = upsampled.amin(dim=(-2, -1), keepdim=True), upsampled.amax(dim=(-2, -1), keepdim=True)
    masks = (upsampled - low) / (high - low + 1e-8)
    c = int(targets[0])
    masked = perturbation.masked_class_scores(model, small[0], masks, c, 32)
    weights = perturbation.scorecam_weights(masked, scores[0, c], torch.ones_like(masked, dtype=torch.bool))
    emulated = cs.plumbing.normalize(cs.plumbing.upsample(perturbation.scorecam_map(weights[None], activations), small.shape[-2:]))
    assert pearson(ours[0], theirs[0]) >= 0.97
    assert pearson(emulated[0], theirs[0]) >= 0.999


# --- torchcam -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, peer", [("cam", "CAM"), ("gradcam", "GradCAM"), ("xgradcam", "XGradCAM"),
                                        ("layercam", "LayerCAM")])
def test_methods_match_torchcam_on_raw_maps(name, peer, model, images, targets):
    options = {"fc_layer": "fc"} if name == "cam" else {}
    theirs = run_torchcam(getattr(torchcam_methods, peer), model, images, targets, "conv_head",
                          gradients=name != "cam", **options)
    ours, _ = cs.METHODS[name].function(model, images, targets, "conv_head")
    assert theirs.shape == ours.shape
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99, (name, PHOTOS[b])


def test_scorecam_matches_torchcam_on_raw_maps(model, small, targets):
    """torchcam normalises A^n before upsampling it (we after): masks differ by an affine map."""
    theirs = run_torchcam(torchcam_methods.ScoreCAM, model, small, targets[:1], FEW_CHANNELS, gradients=False)
    ours, _ = cs.METHODS["scorecam"].function(model, small, targets[:1], FEW_CHANNELS, batch_size=32)
    assert pearson(ours[0], theirs[0]) >= 0.99


def test_torchcam_gradcampp_drops_the_alpha_denominator(model, images, targets):
    """torchcam's Grad-CAM++ divides its alphas in place on a copy (boolean-mask indexing),
    so its alpha is just g^2: its weights are sum_ij g^2 ReLU(g), not the paper's. Ours keep
    the denominator (and agree with pytorch-grad-cam above); on these photos the maps differ."""
    theirs = run_torchcam(torchcam_methods.GradCAMpp, model, images, targets, "conv_head")
    ours, _ = cs.METHODS["gradcam++"].function(model, images, targets, "conv_head")
    activations, gradients, _, _ = forward_and_backward(model, images, "conv_head", targets)
    without_denominator = (gradients.pow(2) * torch.relu(gradients)).sum(dim=(-2, -1))
    emulated = gradient.gradcam_map(without_denominator, activations)
    for b in range(len(images)):
        assert pearson(emulated[b], theirs[b]) >= 0.999
    assert min(pearson(ours[b], theirs[b]) for b in range(len(images))) < 0.99


def test_pytorch_grad_cam_gradcampp_is_the_closed_form_plus_its_eps(model, images, targets):
    """Where our Grad-CAM++ and the peer part (at "stem", whose true alpha denominators are about
    the size of the peer's eps = 1e-6), the closed form with that eps added reproduces the peer:
    the difference is the eps, not the formula. At conv_head the eps does not matter."""
    from camsurvey.lab import faithfulness

    for layer in ("stem", "conv_head"):
        theirs = run_pytorch_grad_cam(pytorch_grad_cam.GradCAMPlusPlus, model, images, targets, layer)
        with_eps = cs.plumbing.normalize(cs.plumbing.upsample(
            faithfulness.gradcampp_authors(model, images, targets, layer, eps=1e-6), images.shape[-2:]))
        ours = cs.explain("gradcam++", model, images, target=targets, layer=layer)
        for b in range(len(images)):
            assert pearson(with_eps[b], theirs[b]) >= 0.999, (layer, PHOTOS[b])
            if layer == "conv_head":
                assert pearson(ours[b], theirs[b]) >= 0.999, PHOTOS[b]
        if layer == "stem":
            assert min(pearson(ours[b], theirs[b]) for b in range(len(images))) < 0.99
