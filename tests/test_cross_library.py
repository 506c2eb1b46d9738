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
per channel) are compared at the layer "stem" (32 channels) on one photo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camsurvey as cs
from camsurvey.methods import gradient
from camsurvey.plumbing import forward_and_backward

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

PHOTOS = ["chelsea", "coffee"]
FEW_CHANNELS = "stem"


def pearson(a, b) -> float:
    pair = torch.stack([torch.as_tensor(a).flatten().double(), torch.as_tensor(b).flatten().double()])
    return float(torch.corrcoef(pair)[0, 1])


@pytest.fixture(scope="module")
def model():
    return cs.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def images():
    return cs.load_images(PHOTOS)


@pytest.fixture(scope="module")
def targets(model, images):
    with torch.no_grad():
        return model(images).argmax(dim=1)


def run_pytorch_grad_cam(peer, model, images, targets, layer, **options):
    """The peer's final maps (B, H, W). Its input must require gradients: our model is frozen."""
    with peer(model=model, target_layers=[model.layer(layer)], **options) as cam:
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


def test_ablationcam_matches_pytorch_grad_cam(model, images, targets):
    theirs = run_pytorch_grad_cam(pytorch_grad_cam.AblationCAM, model, images[:1], targets[:1], FEW_CHANNELS)
    ours = cs.explain("ablationcam", model, images[:1], target=targets[:1], layer=FEW_CHANNELS)
    assert pearson(ours[0], theirs[0]) >= 0.99


def test_scorecam_matches_pytorch_grad_cam(model, images, targets):
    """The peer upsamples its masks with align_corners=True (we: False), hence not 0.999."""
    theirs = run_pytorch_grad_cam(pytorch_grad_cam.ScoreCAM, model, images[:1], targets[:1], FEW_CHANNELS)
    ours = cs.explain("scorecam", model, images[:1], target=targets[:1], layer=FEW_CHANNELS)
    assert pearson(ours[0], theirs[0]) >= 0.99


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


def test_scorecam_matches_torchcam_on_raw_maps(model, images, targets):
    """torchcam normalises A^n before upsampling it (we after): masks differ by an affine map."""
    theirs = run_torchcam(torchcam_methods.ScoreCAM, model, images[:1], targets[:1], FEW_CHANNELS, gradients=False)
    ours, _ = cs.METHODS["scorecam"].function(model, images[:1], targets[:1], FEW_CHANNELS)
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
