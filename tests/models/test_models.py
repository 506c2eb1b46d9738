"""The models: known ImageNet answers, the features/head split, weights checks."""

from __future__ import annotations

import pytest
import torch

import camsurvey as cs
from camsurvey.models import efficientnet_lite


@pytest.mark.parametrize(
    "photo, label, probability",
    [("chelsea", "Egyptian cat", 0.77), ("coffee", "espresso", 0.90), ("grace_hopper", "military uniform", None)],
)
def test_efficientnet_lite0_known_answers(model, photo, label, probability):
    _index, name, p = cs.top_k(model, cs.load_image(photo), 1)[0][0]
    assert name == label
    if probability is not None:
        assert p == pytest.approx(probability, abs=0.02)


def test_model_takes_unit_range_and_normalises_inside(model):
    assert type(model[0]).__name__ == "Normalize"
    black = torch.zeros(1, 3, 224, 224)
    assert torch.isfinite(model(black)).all()


def test_default_layer_is_after_an_activation(model):
    layer = model.layer(model.default_layer)
    last = list(layer.modules())[-1]
    assert isinstance(last, torch.nn.ReLU6)


@pytest.mark.parametrize("layer", ["block10", "block15", "conv_head"])
def test_split_composes_to_the_whole_model(model, photos, layer):
    features, head = model.split(layer)
    with torch.no_grad():
        assert torch.allclose(head(features(photos[:2])), model(photos[:2]), atol=1e-4)


def test_split_at_unknown_layer_lists_split_points(model):
    with pytest.raises(ValueError, match="conv_head"):
        model.split("no_such_layer")
    with pytest.raises(ValueError, match="unknown layer"):
        model.layer("no_such_layer")


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        cs.load_model("resnet1000")


def test_loaded_model_is_frozen_and_in_eval_mode(model):
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_weights_checksum_is_verified(tmp_path, monkeypatch):
    original = efficientnet_lite.packaged_weights_path("efficientnet_lite0")
    corrupt = tmp_path / "weights.pth"
    data = bytearray(original.read_bytes())
    data[1000] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "packaged_weights_path", lambda name: corrupt)
    with pytest.raises(ValueError, match="sha256"):
        cs.load_model("efficientnet_lite0")


def test_weights_file_from_a_path_that_is_missing_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cs.load_model("efficientnet_lite0", weights=tmp_path / "missing.pth")


def test_truncated_weights_file_gives_a_clear_error(tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(efficientnet_lite.packaged_weights_path("efficientnet_lite0").read_bytes()[:5000])
    with pytest.raises(ValueError, match="could not load"):
        cs.load_model("efficientnet_lite0", weights=truncated)


def test_torchvision_model_without_weights_explains_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        cs.load_model("resnet18")


@pytest.mark.parametrize("name, layer", [("resnet18", "layer4"), ("vgg16", "features_29")])
def test_torchvision_models_with_random_weights_split_and_explain(name, layer):
    model = cs.load_model(name, weights=None, device="cpu")
    assert model.default_layer == layer
    image = torch.rand(1, 3, 64, 64)
    features, head = model.split()
    with torch.no_grad():
        assert torch.allclose(head(features(image)), model(image), atol=1e-4)
    saliency = cs.explain("gradcam", model, image)
    assert saliency.shape == (1, 64, 64) and torch.isfinite(saliency).all()


def test_torchvision_weights_from_a_path_load(tmp_path):
    reference = cs.load_model("resnet18", weights=None, device="cpu")
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        net.fc.weight.add_(1.0)  # differ from the seeded random weights
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    loaded = cs.load_model("resnet18", weights=tmp_path / "r18.pth", device="cpu")
    assert torch.equal(loaded.fc.weight, net.fc.weight)
    assert not torch.equal(loaded.fc.weight, reference.fc.weight)


def test_same_padding_matches_tensorflow_rule():
    from camsurvey.models.efficientnet_lite import SamePadConv2d

    conv = SamePadConv2d(1, 1, 3, stride=2, bias=False)
    for size in (7, 8, 224, 225):
        assert conv(torch.zeros(1, 1, size, size)).shape[-1] == -(-size // 2)
