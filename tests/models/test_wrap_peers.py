"""Plain modules against the peers (issue 19): torchvision ResNet, ViT and Swin and a timm ViT, random weights.

The peers are test oracles only. Every model here is built with ``weights=None`` (seeded), so
nothing downloads; the input is given to the peers and to camsurvey alike (``normalize=None``).
pytorch-grad-cam's maps are final maps (``resize(norm(ReLU(.)))``), compared with ours by
Pearson's correlation (blind to the affine difference of resizing before or after min-max
scaling, see ``tests/methods/test_cross_library.py``); torchcam's raw maps with our raw maps.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import camsurvey as cs

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
from oracles import pearson  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def seeded(builder, **options):
    torch.manual_seed(0)
    return builder(weights=None, **options).eval()


@pytest.fixture(scope="module")
def resnet():
    return seeded(torchvision.models.resnet18, num_classes=10)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def top1(model, images):
    with torch.no_grad():
        return model(images).argmax(dim=1)


def grad_cam_peer(peer, model, layers, images, targets, reshape_transform=None):
    with peer(model=model, target_layers=layers, reshape_transform=reshape_transform) as cam:
        cam.batch_size = 64
        return torch.from_numpy(np.asarray(cam(input_tensor=images, targets=targets)))


# --- torchvision ResNet-18, every shared method ------------------------------------------------

# Score-CAM and Ablation-CAM cost a pass per channel: they are compared at layer1 and layer2 (64 and 128 channels)
PER_CHANNEL = {"scorecam": "layer1", "ablationcam": "layer2"}


@pytest.mark.parametrize("name, peer", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus"),
                                        ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM"),
                                        ("hirescam", "HiResCAM"), ("ablationcam", "AblationCAM")])
def test_a_plain_resnet_matches_pytorch_grad_cam(name, peer, resnet, images):
    targets, layer = top1(resnet, images), PER_CHANNEL.get(name, "layer4")
    theirs = grad_cam_peer(getattr(pytorch_grad_cam, peer), resnet, [resnet.get_submodule(layer)], images,
                           [ClassifierOutputTarget(int(c)) for c in targets])
    ours = cs.explain(name, resnet, images, layer=layer, target=targets, normalize=None)
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99, (name, b)


@pytest.mark.parametrize("name, peer", [("cam", "CAM"), ("gradcam", "GradCAM"), ("xgradcam", "XGradCAM"),
                                        ("layercam", "LayerCAM"), ("scorecam", "ScoreCAM")])
def test_a_plain_resnet_matches_torchcam_on_raw_maps(name, peer, resnet, images):
    targets, layer = top1(resnet, images), PER_CHANNEL.get(name, "layer4")
    options = {"fc_layer": "fc"} if name == "cam" else {}
    with getattr(torchcam_methods, peer)(resnet, target_layer=layer, input_shape=(3, 64, 64), **options) as extractor:
        scores = resnet(images.clone().requires_grad_(name not in ("cam", "scorecam")))
        theirs = extractor(targets.tolist(), scores, normalized=False)[0].detach()
    ours = cs.explain(name, resnet, images, layer=layer, target=targets, normalize=None, raw=True,
                      **({"batch_size": 32} if name == "scorecam" else {}))
    assert ours.shape == theirs.shape
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99, (name, b)


def test_a_plain_resnet_equals_camsurveys_resnet_of_the_same_weights(images):
    """torchvision's resnet18 seeded as camsurvey seeds it is load_model("resnet18", weights=None): the
    benchmark's plain-module case (``plain_torchvision``) compares the same network both ways."""
    plain = cs.models.wrap.plain_torchvision("resnet18")
    ours = cs.load_model("resnet18", weights=None, device="cpu")
    for name in ("gradcam", "ablationcam", "reciprocam"):
        assert torch.allclose(cs.explain(name, plain, images, layer="layer4"), cs.explain(name, ours, images),
                              atol=1e-4), name


def test_a_logit_difference_target_matches_pytorch_grad_cams_custom_target(resnet, images):
    theirs = grad_cam_peer(pytorch_grad_cam.GradCAM, resnet, [resnet.layer4], images,
                           [lambda output: output[1] - output[2]] * len(images))
    ours = cs.explain("gradcam", resnet, images, layer="layer4", normalize=None,
                      target=lambda scores: scores[:, 1] - scores[:, 2])
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99


def test_two_layers_fused_match_pytorch_grad_cam_and_torchcam(resnet, images):
    targets = top1(resnet, images)
    theirs = grad_cam_peer(pytorch_grad_cam.LayerCAM, resnet, [resnet.layer3, resnet.layer4], images,
                           [ClassifierOutputTarget(int(c)) for c in targets])
    ours = cs.explain("layercam", resnet, images, layer=["layer3", resnet.layer4], target=targets, normalize=None)
    for b in range(len(images)):
        assert pearson(ours[b], theirs[b]) >= 0.99
    with torchcam_methods.LayerCAM(resnet, target_layer=["layer3", "layer4"], input_shape=(3, 64, 64)) as extractor:
        scores = resnet(images.clone().requires_grad_(True))
        cams = extractor(targets.tolist(), scores)
        fused = torchcam_methods.LayerCAM.fuse_cams(cams)
    fused = F.interpolate(fused.unsqueeze(1), size=(64, 64), mode="bilinear", align_corners=False)[:, 0].detach()
    tanh_max = cs.explain("layercam", resnet, images, layer=["layer3", "layer4"], target=targets, normalize=None,
                          fuse="tanh-max")
    for b in range(len(images)):  # torchcam fuses at the largest layer's 4 x 4 grid, we at the input's 64 x 64
        assert pearson(tanh_max[b], fused[b]) >= 0.95


# --- token-shaped layers: ViT and Swin ------------------------------------------------------------

def vit_tokens_to_maps(tokens, grid=4):
    return tokens[:, 1:, :].reshape(tokens.shape[0], grid, grid, tokens.shape[2]).permute(0, 3, 1, 2)


def channels_last_to_maps(maps):
    return maps.permute(0, 3, 1, 2)


@pytest.mark.parametrize("case", ["torchvision-vit", "torchvision-swin", "timm-vit"])
def test_token_layers_match_pytorch_grad_cam_with_its_reshape_transform(case, images):
    if case == "torchvision-vit":
        model = seeded(torchvision.models.vit_b_16, image_size=64, num_classes=10)
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts the head at zero: no gradient
        layer, transform = model.encoder.layers.encoder_layer_11.ln_1, vit_tokens_to_maps
    elif case == "torchvision-swin":
        model = seeded(torchvision.models.swin_t, num_classes=10)
        layer, transform = model.features[7][1].norm1, channels_last_to_maps
    else:
        timm = pytest.importorskip("timm")
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10).eval()
        layer, transform = model.blocks[-1].norm1, vit_tokens_to_maps
    targets = torch.tensor([3, 3])  # a class whose Grad-CAM map is not all zero on both images (random weights)
    theirs = grad_cam_peer(pytorch_grad_cam.GradCAM, model, [layer], images,
                           [ClassifierOutputTarget(int(c)) for c in targets], reshape_transform=transform)
    ours = cs.explain("gradcam", model, images, layer=layer, target=targets, normalize=None)  # layout detected
    assert ours.shape == (2, 64, 64) and torch.isfinite(ours).all()
    for b in range(len(images)):
        assert ours[b].max() > 0
        assert pearson(ours[b], theirs[b]) >= 0.99, (case, b)
    raw = cs.explain("gradcam", model, images, layer=layer, target=targets, normalize=None, raw=True)
    assert raw.shape == ((2, 4, 4) if "vit" in case else (2, 2, 2))


def test_every_head_method_runs_on_a_vit_where_the_residual_stream_crosses_the_layer(images):
    """At a block's ``norm1`` the rest of the network reads the block's input too, and the layer's
    output holds the class token: fx heads per image, and the hook, give the same maps."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, num_classes=10).eval()
    layer = "blocks.11.norm1"
    by_fx = cs.wrap(model, layer=layer, normalize=None, split="fx")
    by_hook = cs.wrap(model, layer=layer, normalize=None, split="hook")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fx split must reproduce the module (no fallback to the hook)
        cs.explain("reciprocam", by_fx, images[:1])
    split = next(v for k, v in cs.models.wrap.SPLITS_MADE[model].items() if k[0] == layer and k[1] == "fx")
    assert isinstance(split, cs.models.wrap.FxSplit) and split.frontier >= 1
    for name in ("reciprocam", "ablationcam"):  # raw maps: a random ViT's Recipro-CAM spans ~1e-4, which
        # min-max scaling blows up to the size of float rounding differences between the two paths
        fx_maps = cs.explain(name, by_fx, images[:1], raw=True)
        hook_maps = cs.explain(name, by_hook, images[:1], raw=True)
        assert torch.isfinite(fx_maps).all() and fx_maps.shape == (1, 4, 4)
        assert torch.allclose(fx_maps, hook_maps, rtol=1e-4, atol=1e-6), name
