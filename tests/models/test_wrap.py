"""Plain ``torch.nn.Module`` classifiers (issue 19): every method, the caller's module unchanged, clear errors.

The oracle for "every method runs on a plain module" is the same network built as a camsurvey
model: a plain module with in-place ReLUs, BatchNorm in training mode and unfrozen parameters,
and a :class:`CamModel` holding copies of the same layers, must give the same maps for every
method of the registry -- and the plain module must come back exactly as it went in.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

import camsurvey as cs
from camsurvey.models.base import CamModel, GlobalAvgPool, Normalize
from camsurvey.models.wrap import SPLITS_MADE, FxSplit, WrappedModel
from camsurvey.plumbing import forward_activations

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


class PlainNet(nn.Module):
    """A user's classifier as users write them: in-place ReLUs, BatchNorm, a flatten call, no camsurvey parts."""

    def __init__(self, channels: int = 6, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def plain_net(seed: int = 0) -> PlainNet:
    """Unfrozen, in training mode, with BatchNorm statistics that are not the defaults."""
    torch.manual_seed(seed)
    net = PlainNet()
    with torch.no_grad():
        for bn in (net.features[1], net.features[4]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return net.train()


def as_camsurvey_model(net: PlainNet) -> CamModel:
    """The same network (copied layers, out-of-place ReLUs) as camsurvey's own model."""
    features = copy.deepcopy(net.features)
    for module in features:
        if isinstance(module, nn.ReLU):
            module.inplace = False
    stages = OrderedDict(normalize=Normalize(MEAN, STD), features=features, pool=GlobalAvgPool(),
                         fc=copy.deepcopy(net.fc))
    model = CamModel(stages, name="plain", default_layer="features", categories=[str(i) for i in range(5)])
    return model.eval().requires_grad_(False)


def images(count: int = 2, size: int = 40, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def small_params(name: str) -> dict:
    wanted = {"samples": 3, "steps": 3, "scales": (224,), "window": 224, "step": 224}
    return {k: v for k, v in wanted.items() if k in cs.METHODS[name].params}


def snapshot(module: nn.Module) -> dict:
    """Everything of a module a call could change."""
    return {"state": {k: v.clone() for k, v in module.state_dict().items()},
            "training": [m.training for m in module.modules()],
            "requires_grad": [p.requires_grad for p in module.parameters()],
            "grad": [p.grad for p in module.parameters()],
            "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                         for m in module.modules())}


def assert_unchanged(module: nn.Module, before: dict) -> None:
    after = snapshot(module)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert all(a is b for a, b in zip(after["grad"], before["grad"]))
    assert after["hooks"] == before["hooks"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])


# --- every method, and the caller's objects unchanged ------------------------------------------

@pytest.mark.parametrize("name", list(cs.METHODS))
def test_every_method_on_a_plain_module_equals_the_same_network_as_a_camsurvey_model(name):
    net, x = plain_net(), images()
    reference = cs.explain(name, as_camsurvey_model(net), x, **small_params(name))
    given = x.clone().requires_grad_(True)  # a caller's tensor that tracks gradients
    before = snapshot(net)
    ours = cs.explain(name, net, given, layer="features", normalize=(MEAN, STD), **small_params(name))
    assert ours.shape == reference.shape == (2, 40, 40)
    assert torch.allclose(ours, reference, atol=1e-4), (name, float((ours - reference).abs().max()))
    assert_unchanged(net, before)  # training mode, requires_grad, .grad, BatchNorm statistics, hooks
    assert given.grad is None and torch.equal(given.detach(), x)


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "ablationcam", "reciprocam", "integrated-gradients"])
def test_the_module_is_unchanged_also_when_a_call_raises(name):
    net, x = plain_net(), images()
    before = snapshot(net)
    with pytest.raises(ValueError, match="out of range"):
        cs.explain(name, net, x, layer="features", target=99, **small_params(name))
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "layercam", "smoothgrad", "integrated-gradcam", "scorecam"])
def test_inference_mode_gives_the_same_maps(name):
    net, x = plain_net(), images()
    expected = cs.explain(name, net, x, layer="features", **small_params(name))
    with torch.inference_mode():
        inside = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))  # an inference tensor
        got = cs.explain(name, net, inside, layer="features", **small_params(name))
    assert torch.allclose(got, expected, atol=1e-6)


def test_a_camsurvey_model_in_training_mode_and_unfrozen_is_given_back_as_it_was():
    model = as_camsurvey_model(plain_net()).train().requires_grad_(True)
    before = snapshot(model)
    for name in ("gradcam", "saliency", "ablationcam"):
        cs.explain(name, model, images())
    assert_unchanged(model, before)


# --- layers ---------------------------------------------------------------------------------

def test_a_layer_is_a_dotted_name_or_the_module_object_and_unknown_names_list_the_closest():
    net, x = plain_net(), images()
    by_name = cs.explain("gradcam", net, x, layer="features.4")
    by_object = cs.explain("gradcam", net, x, layer=net.features[4])
    assert torch.equal(by_name, by_object)
    with pytest.raises(ValueError, match=r"unknown layer 'featurs'.*'features'") as error:
        cs.explain("gradcam", net, x, layer="featurs")
    assert str(error.value).index("'features'") < str(error.value).index("'fc'")  # closest first


def test_without_a_layer_the_last_spatial_map_the_score_depends_on_is_found():
    net = torchvision.models.resnet18(num_classes=7).eval()
    wrapped = cs.wrap(net)
    cs.explain("gradcam", wrapped, images(1, 64))
    assert wrapped.default_layer == "layer4"


def test_a_module_run_twice_in_one_forward_is_refused_naming_the_layer_that_is_the_same_tensor():
    """torchvision's BasicBlock calls its ``relu`` twice; the second call is the block's output."""
    net = torchvision.models.resnet18(num_classes=7).eval()
    for name in ("gradcam", "layercam", "scorecam"):
        with pytest.raises(ValueError, match=r"'layer4\.1\.relu' runs more than once.*use layer='layer4\.1'"):
            cs.explain(name, net, images(1, 64), layer="layer4.1.relu")
    # the equivalent layer is the same tensor: its maps are what the reused one was meant to give
    model = cs.load_model("resnet18", weights=None, device="cpu")
    with pytest.raises(ValueError, match="runs more than once"):
        cs.explain("gradcam", model, images(1, 64), layer="layer4.1.relu")


def test_in_place_operations_after_the_layer_change_neither_the_activations_nor_the_gradients():
    """features.4 (BatchNorm) is followed by ReLU(inplace=True): A keeps its negative values."""
    net, x = plain_net().eval(), images()
    wrapped = cs.wrap(net, layer="features.4", normalize=(MEAN, STD))
    activations, _ = forward_activations(wrapped, x, "features.4")
    with torch.no_grad():
        expected = net.features[:5]((x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1))
    assert (activations < 0).any() and torch.allclose(activations, expected, atol=1e-6)
    for name in ("gradcam", "layercam", "eigencam", "scorecam"):
        assert torch.isfinite(cs.explain(name, wrapped, x)).all()


@pytest.mark.parametrize("layer", ["fc", "pool"])
@pytest.mark.parametrize("name", list(cs.METHODS))
def test_a_layer_that_is_not_a_spatial_map_is_refused_with_the_valid_layers(name, layer):
    net = plain_net()
    if layer == "pool":  # a (B, C, 1, 1) map is spatial for a plain module; camsurvey's "pool" is (B, C)
        net = as_camsurvey_model(net)
    with pytest.raises(ValueError, match=rf"layer '{layer}' .*not a spatial feature map.*'features'"):
        cs.explain(name, net, images(), layer=layer, **small_params(name))


def test_export_refuses_a_layer_that_is_not_a_spatial_map(tmp_path):
    with pytest.raises(ValueError, match="not a spatial feature map"):
        cs.deploy.export(as_camsurvey_model(plain_net()), tmp_path / "export", layer="pool", input_size=40)


# --- the network after the layer: fx and the hook -----------------------------------------------

class Untraceable(PlainNet):
    """Python control flow on a tensor's value: torch.fx cannot trace it."""

    def forward(self, x):
        if x.mean() > -1e9:  # always true, but only known when x has a value
            x = self.features(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.mark.parametrize("name", ["ablationcam", "reciprocam", "cam"])
def test_fx_split_and_hook_fallback_give_the_same_maps(name):
    net, x = plain_net().eval(), images()
    by_fx = cs.explain(name, cs.wrap(net, layer="features", split="fx"), x)
    if name == "cam":  # CAM reads the head's linear layer: it needs the traced head
        with pytest.raises(ValueError, match="no head of the maps alone"):
            cs.explain(name, cs.wrap(net, layer="features", split="hook"), x)
        return
    by_hook = cs.explain(name, cs.wrap(net, layer="features", split="hook"), x)
    assert torch.allclose(by_fx, by_hook, atol=1e-5)
    untraceable = Untraceable()
    untraceable.load_state_dict(net.state_dict())
    fallback = cs.explain(name, untraceable.eval(), x, layer="features")
    assert torch.allclose(fallback, by_fx, atol=1e-5)
    assert list(SPLITS_MADE[untraceable].values()) == ["hook"]


def test_a_residual_cut_feeds_the_head_what_the_image_computed_before_the_layer():
    """Inside a ResNet block the rest of the network also reads the block's input (the skip):
    the fx head gets it per image; the result is the hook's (a full re-run)."""
    net, x = torchvision.models.resnet18(num_classes=7).eval(), images(1, 64)
    layer = "layer4.1.bn2"
    fx_model, hook_model = cs.wrap(net, layer=layer, split="fx"), cs.wrap(net, layer=layer, split="hook")
    for name in ("reciprocam", "ablationcam"):  # the same maps up to float rounding (different kernels' batch sizes)
        assert torch.allclose(cs.explain(name, fx_model, x), cs.explain(name, hook_model, x), atol=1e-4)
    split = next(v for k, v in SPLITS_MADE[net].items() if k[0] == layer and k[1] == "fx")
    assert isinstance(split, FxSplit) and split.frontier == 1
    with pytest.raises(ValueError, match="also reads tensors computed before the layer"):
        fx_model.split(layer)


def test_a_replaced_sub_module_is_not_served_from_an_old_split():
    net, x = plain_net().eval(), images()
    first = cs.explain("ablationcam", net, x, layer="features")
    net.fc = nn.Linear(6, 5)
    second = cs.explain("ablationcam", net, x, layer="features")
    expected = cs.explain("ablationcam", cs.wrap(net, layer="features", split="hook"), x)
    assert not torch.allclose(first, second) and torch.allclose(second, expected, atol=1e-5)


# --- bad input --------------------------------------------------------------------------------

class Segmenter(nn.Module):
    """Not a classifier: a dict with a (B, K, H, W) output, as torchvision's segmentation models."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))

    def forward(self, x):
        return {"out": self.body(x)}


def test_a_module_that_is_not_a_classifier_is_told_to_give_a_target_callable():
    with pytest.raises(ValueError, match=r"not class scores.*target=a callable"):
        cs.explain("gradcam", Segmenter(), images(), layer="body.1")
    region = cs.explain("gradcam", Segmenter(), images(), layer="body.1",
                        target=lambda out: out["out"][:, 2, :10, :10].sum(dim=(1, 2)))
    assert region.shape == (2, 40, 40) and torch.isfinite(region).all()


@pytest.mark.parametrize("target, error, words", [
    (lambda scores: scores, ValueError, r"returned \(2, 5\).*one float score per image"),
    (lambda scores: scores.argmax(1), ValueError, "float score"),
    (lambda scores: 3.0, TypeError, "must return a tensor"),
])
def test_a_target_callable_of_the_wrong_shape_is_refused(target, error, words):
    with pytest.raises(error, match=words):
        cs.explain("gradcam", plain_net(), images(), layer="features", target=target)


@pytest.mark.parametrize("reshape, words", [("tokens", "cannot be read as 'tokens'"), ("HWC", "reshape must be"),
                                            (lambda a: a.flatten(1), "must return maps of shape")])
def test_a_reshape_that_does_not_fit_is_refused(reshape, words):
    with pytest.raises(ValueError, match=words):
        cs.explain("gradcam", plain_net(), images(), layer="features", reshape=reshape)


@pytest.mark.parametrize("normalize", ["imagenet1k", ((0.5, 0.5), (0.2,) * 3), ((0.5,) * 3, (0.0,) * 3), (1, 2, 3)])
def test_a_bad_normalisation_is_refused(normalize):
    with pytest.raises(ValueError, match="normalize"):
        cs.wrap(plain_net(), normalize=normalize)


def test_normalize_and_reshape_belong_to_plain_modules_only():
    with pytest.raises(ValueError, match=r"plain torch\.nn\.Module"):
        cs.explain("gradcam", as_camsurvey_model(plain_net()), images(), normalize=None)


def test_no_method_has_a_parameter_that_explain_keeps_for_itself():
    for entry in cs.METHODS.values():
        assert not {"fuse", "raw", "normalize", "reshape"} & set(entry.params), entry.name


# --- targets, layers, raw maps ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gradcam", "scorecam", "ablationcam", "layercam"])
def test_a_callable_selecting_one_logit_is_that_class_index(name):
    net, x = plain_net(), images()
    by_index = cs.explain(name, net, x, layer="features", target=3)
    by_callable = cs.explain(name, net, x, layer="features", target=lambda scores: scores[:, 3])
    assert torch.allclose(by_index, by_callable, atol=1e-5)


def test_several_layers_are_fused_as_the_mean_or_returned_one_by_one():
    net, x = plain_net(), images()
    layers = ["features.2", "features"]
    each = cs.explain("layercam", net, x, layer=layers, fuse=False)
    assert isinstance(each, list) and len(each) == 2
    assert torch.equal(each[0], cs.explain("layercam", net, x, layer="features.2"))
    fused = cs.explain("layercam", net, x, layer=layers)
    assert torch.allclose(fused, cs.plumbing.normalize((each[0] + each[1]) / 2), atol=1e-6)
    tanh_max = cs.explain("layercam", net, x, layer=layers, fuse="tanh-max")
    assert torch.allclose(tanh_max, cs.plumbing.normalize(torch.maximum(torch.tanh(2 * each[0]),
                                                                        torch.tanh(2 * each[1]))), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        cs.explain("layercam", net, x, layer=[])


def test_raw_maps_are_the_methods_maps_before_upsampling_and_normalisation():
    net, x = plain_net(), images()
    raw = cs.explain("gradcam", net, x, layer="features", raw=True)
    assert raw.shape == (2, 20, 20)
    assert torch.allclose(cs.plumbing.finish(raw, (40, 40)), cs.explain("gradcam", net, x, layer="features"))
    signed = cs.explain("hirescam", net, x, layer="features", raw=True)
    assert signed.min() >= 0  # HiResCAM ends in a ReLU; Eigen-CAM's projection before its ReLU is signed:
    raw_list = cs.explain("gradcam", net, x, layer=["features.2", "features"], raw=True, fuse=False)
    assert [tuple(r.shape) for r in raw_list] == [(2, 40, 40), (2, 20, 20)]
    with pytest.raises(ValueError, match="fuse=False"):
        cs.explain("gradcam", net, x, layer=["features.2", "features"], raw=True)


# --- CUDA -------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_every_method_runs_on_cuda_without_moving_maps_to_the_cpu():
    net, x = plain_net().cuda(), images().cuda()
    for name in cs.METHODS:
        saliency = cs.explain(name, net, x, layer="features", **small_params(name))
        assert saliency.device.type == "cuda" and torch.isfinite(saliency).all(), name
    assert isinstance(cs.wrap(net), WrappedModel)


def test_what_camsurvey_keeps_of_a_module_goes_with_it():
    """Splits, default layers and checked layers are kept weakly: explaining a module does not keep it alive."""
    import gc
    import weakref

    net = plain_net()
    alive = weakref.ref(net)
    for name in ("ablationcam", "gradcam", "cam"):
        cs.explain(name, net, images())
    del net
    gc.collect()
    assert alive() is None


class Counting(PlainNet):
    """A module that writes a buffer at every forward pass, whatever its mode."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def test_a_buffer_a_forward_pass_writes_is_given_back_as_it_was():
    net = Counting()
    before = snapshot(net)
    cs.explain("scorecam", net, images(), layer="features")
    assert_unchanged(net, before)


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "ablationcam", "reciprocam", "cam"])
def test_after_the_first_call_a_plain_module_costs_the_methods_own_forward_passes(name):
    """The first call checks the layer (and traces the split) once; every later call runs the
    module's full forward pass exactly as often as the method's ``cost`` says (head passes of
    Ablation-CAM and Recipro-CAM go through the traced head, not the whole module)."""
    net, x = plain_net().eval(), images(1)
    wrapped = cs.wrap(net, layer="features")
    cs.explain(name, wrapped, x, **({"batch_size": 2} if name == "scorecam" else {}))
    calls = []
    handle = net.register_forward_pre_hook(lambda module, inputs: calls.append(len(inputs[0])))
    try:
        cs.explain(name, wrapped, x, **({"batch_size": 2} if name == "scorecam" else {}))
    finally:
        handle.remove()
    live = int((~cs.plumbing.is_constant(forward_activations(wrapped, x, "features")[0][0])).sum())
    expected = cs.METHODS[name].count_passes(6, 400, live)["forward"]
    assert sum(calls) == expected, (name, calls)
