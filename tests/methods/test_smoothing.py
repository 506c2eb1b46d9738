"""Smoothing and integration (survey Section III): SmoothGrad, Smooth Grad-CAM++, SS-CAM,
Integrated Gradients, Integrated Grad-CAM, IS-CAM.

To stay within the test budget the photo is resized to 96 or 128 pixels (the network is fully
convolutional, so it still classifies it) and the Score-CAM variants use the 16-channel layer
``block0`` with N = 3 or 4.
"""

import pytest
import torch
import torch.nn.functional as F
from oracles import pearson

import camsurvey as cs
from camsurvey import plumbing
from camsurvey.methods import gradient, perturbation
from camsurvey.methods import smoothing as sm


@pytest.fixture(scope="module")
def model():
    return cs.load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def photo():
    return cs.load_images(["chelsea"])


def resized(images, size):
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


# --- Integrated Gradients -------------------------------------------------------------------

def test_integrated_gradients_completeness(model, photo):
    """sum_i IG_i = F(x) - F(x') within 1 % at 128 steps (the real model, one photo at 128 px,
    black baseline). This network's path gradients are irregular: at 64 steps the error on
    this photo is still several percent (the chapter plots it), so the test uses 128."""
    image = resized(photo, 128)
    attributions = sm.integrated_gradients_attributions(model, image, target=285, baseline=0.0, steps=128,
                                                        batch_size=32)
    assert attributions.shape == image.shape
    with torch.no_grad():
        gap = (model(image)[0, 285] - model(torch.zeros_like(image))[0, 285]).item()
    assert abs(gap) > 1.0
    assert abs(attributions.sum().item() - gap) <= 0.01 * abs(gap)


def test_integrated_gradients_matches_captum(model, photo):
    from captum.attr import IntegratedGradients

    image = resized(photo, 96)
    ours = sm.integrated_gradients_attributions(model, image, target=285, baseline=0.0, steps=16)
    theirs = IntegratedGradients(model).attribute(image, baselines=torch.zeros_like(image), target=285,
                                                  n_steps=16, method="riemann_right")
    assert pearson(ours, theirs) >= 0.99
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-5)


def test_integrated_gradients_satisfies_sensitivity_where_gradients_do_not():
    """f(x) = 1 - ReLU(1 - x): f(2) - f(0) = 1, yet df/dx(2) = 0; IG gives the change to x."""
    def toy(x):
        return 1 - torch.relu(1 - x[0])

    x, baseline = torch.tensor([2.0]), torch.tensor([0.0])
    x_grad = x.clone().requires_grad_(True)
    toy(x_grad).backward()
    assert x_grad.grad.item() == 0.0
    attribution = sm.integrated_gradients_of(toy, x, baseline, steps=101).item()
    assert attribution == pytest.approx(toy(x).item() - toy(baseline).item(), abs=0.02)


def test_integrated_gradients_is_implementation_invariant():
    """Two different networks computing the same function get the same attributions."""
    def relu_form(x):  # max(x0, x1) written with one ReLU
        return x[1] + torch.relu(x[0] - x[1])

    def other_form(x):  # the same function, written as (a + b + |a - b|) / 2
        return (x[0] + x[1] + torch.relu(x[0] - x[1]) + torch.relu(x[1] - x[0])) / 2

    x, baseline = torch.tensor([3.0, 1.0]), torch.zeros(2)
    torch.testing.assert_close(sm.integrated_gradients_of(relu_form, x, baseline, 64),
                               sm.integrated_gradients_of(other_form, x, baseline, 64))


def test_integrated_gradcam_with_the_image_as_baseline_is_m_times_gradcam(model, photo):
    """Every path point is the image itself: the sum of m Grad-CAM maps, and with the baseline's
    activations subtracted, nothing at all."""
    image = resized(photo, 96)
    ours, _ = sm.integrated_gradcam(model, image, None, None, baseline=image, steps=3)
    theirs, _ = gradient.gradcam(model, image, None, None)
    torch.testing.assert_close(ours, 3 * theirs, rtol=1e-4, atol=1e-6)
    subtracted, _ = sm.integrated_gradcam(model, image, None, None, baseline=image, steps=3, subtract_baseline=True)
    assert not subtracted.any()


def test_integrated_gradcam_path_starts_at_the_baseline_and_stops_before_the_image():
    assert torch.equal(sm.integrated_gradcam_alphas(4), torch.tensor([0.0, 0.25, 0.5, 0.75]))


# --- SmoothGrad (eq. 5) ---------------------------------------------------------------------

def test_smoothgrad_with_zero_noise_equals_its_base_method(model, photo):
    image = resized(photo, 96)
    for base in ("saliency", "gradcam"):
        smoothed, _ = sm.smoothgrad(model, image, None, None, base=base, samples=2, sigma=0.0)
        plain, _ = cs.METHODS[base].function(model, image, None, None)
        # equal up to float rounding (a batch of 2 runs other convolution kernels than a batch of 1)
        torch.testing.assert_close(smoothed, plain, rtol=1e-3, atol=1e-4 * plain.abs().max().item())


def test_variance_of_the_average_falls_as_one_over_n():
    maps = torch.randn(64, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.0
    variances = sm.variance_of_average(maps, (1, 4, 16))
    for count, variance in variances.items():
        assert variance * count == pytest.approx(4.0, rel=0.35)


def test_smoothgrad_is_deterministic_given_a_seed(model, photo):
    image = resized(photo, 96)
    first = cs.explain("smoothgrad", model, image, samples=3, sigma=0.2, seed=7)
    again = cs.explain("smoothgrad", model, image, samples=3, sigma=0.2, seed=7)
    other = cs.explain("smoothgrad", model, image, samples=3, sigma=0.2, seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_smoothgrad_matches_captum_noise_tunnel_on_the_same_noise(model, photo):
    """Captum's NoiseTunnel draws its noise from the global generator in the same order as our
    seeded generator, so seeding both feeds both the same noise tensors."""
    from captum.attr import NoiseTunnel, Saliency

    image, samples, sigma, seed = resized(photo, 96), 4, 0.15, 11
    std = sm.noise_scale(image, sigma)[0]
    noisy = sm.noisy_copies(image[0], std, samples, torch.Generator().manual_seed(seed))
    per_channel = sm.smoothgrad_average(sm.input_gradients(model, noisy, 285)[0].abs().unsqueeze(0))
    torch.manual_seed(seed)
    theirs = NoiseTunnel(Saliency(model)).attribute(image, nt_type="smoothgrad", nt_samples=samples,
                                                    stdevs=std.item(), target=285)
    assert pearson(per_channel, theirs) >= 0.99
    # and the registered method averages the saliency maps of exactly these noisy copies
    ours, _ = sm.smoothgrad(model, image, 285, None, samples=samples, sigma=sigma, seed=seed)
    torch.testing.assert_close(ours[0], sm.saliency_map(sm.input_gradients(model, noisy, 285)[0]).mean(0))


# --- Smooth Grad-CAM++ ----------------------------------------------------------------------

def test_smoothgradcampp_with_zero_noise_is_gradcampp(model, photo):
    image = resized(photo, 96)
    smoothed, _ = sm.smoothgradcampp(model, image, None, None, samples=2, sigma=0.0)
    plain, _ = gradient.gradcampp(model, image, None, None)
    torch.testing.assert_close(smoothed, plain, rtol=1e-4, atol=1e-6)


def test_torchcam_smoothgradcampp_weights_the_last_noisy_gradient_not_the_average(model, photo):
    """Why torchcam's Smooth Grad-CAM++ disagrees with ours. Given the same noisy copies,
    torchcam's map is rebuilt exactly by three departures from Omeiza et al.'s formula: the
    ReLU in the weights takes the *last* noisy copy's gradient instead of the average over the
    copies, the weighted sum uses the last noisy copy's activations instead of the clean
    image's, and the alphas' denominator sums ``A_ab <g^3>_ab`` over positions instead of
    ``sum_ab A_ab`` times ``<g^3>_ij``. The formula as published (ours) gives another map."""
    from torch.distributions import Normal
    from torchcam.methods import SmoothGradCAMpp

    image, layer, samples, std, seed = photo, "conv_head", 4, 0.3, 3
    activations, _, _, target = plumbing.forward_and_backward(model, image, layer, None)
    with SmoothGradCAMpp(model, target_layer=layer, num_samples=samples, std=std) as extractor:
        model(image)
        torch.manual_seed(seed)
        theirs = extractor(int(target[0]))[0][0]
    torch.manual_seed(seed)  # the same noise, drawn the way torchcam draws it
    passes = [plumbing.forward_and_backward(model, image + Normal(0, std).sample(image.shape), layer, target)
              for _ in range(samples)]
    gradients, last_activations = torch.cat([p[1] for p in passes]), passes[-1][0][0]
    mean_g, mean_g2, mean_g3 = sm.gradient_moments(gradients)
    torchcam_alphas = mean_g2 / (2 * mean_g2 + (mean_g3 * activations[0]).sum(dim=(-2, -1), keepdim=True) + 1e-8)
    torchcam_weights = (torchcam_alphas * torch.relu(gradients[-1])).sum(dim=(-2, -1))
    torchcam_rule = torch.relu((torchcam_weights[:, None, None] * last_activations).sum(dim=0))
    published = torch.relu((sm.smoothgradcampp_weights(mean_g, mean_g2, mean_g3, activations[0])[:, None, None]
                            * activations[0]).sum(dim=0))
    assert pearson(torchcam_rule, theirs) >= 0.999
    assert pearson(published, theirs) < 0.99


# --- SS-CAM and IS-CAM ----------------------------------------------------------------------

def test_sscam_without_noise_and_iscam_with_one_step_are_scorecam(model, photo):
    image = resized(photo, 96)
    plain, _ = perturbation.scorecam(model, image, None, "block0")
    smoothed, _ = sm.sscam(model, image, None, "block0", samples=1, sigma=0.0)
    integrated, _ = sm.iscam(model, image, None, "block0", steps=1)
    # the same sums in other batch layouts: equal up to float32 rounding of the scores
    scale = plain.abs().max()
    torch.testing.assert_close(smoothed / scale, plain / scale, rtol=0, atol=1e-4)
    torch.testing.assert_close(integrated / scale, plain / scale, rtol=0, atol=1e-4)


def test_sscam_matches_torchcam_on_the_same_noise(model, photo):
    """Same seed, same noise order; torchcam normalises A^n before upsampling and we after
    (``scorecam_masks``), a small difference."""
    from torchcam.methods import SSCAM

    image, samples, sigma, seed = resized(photo, 96), 3, 0.5, 2
    ours, _ = sm.sscam(model, image, 285, "block0", samples=samples, sigma=sigma, seed=seed)
    with SSCAM(model, target_layer="block0", num_samples=samples, std=sigma, input_shape=(3, 96, 96)) as extractor:
        model(image)
        torch.manual_seed(seed)
        theirs = extractor(285)[0][0]
    assert pearson(ours, theirs) >= 0.99


def test_iscam_matches_torchcam_with_its_cumulative_scales(model, photo):
    """torchcam scales the masked input by the running sums 1/N, 3/N, 6/N, ... (up to (N+1)/2), as
    the paper's algorithm and our default do (our variant: i/N). With torchcam's masks (it
    normalises A^n before upsampling it) our pieces reproduce its map."""
    from torchcam.methods import ISCAM

    image, steps, layer = resized(photo, 96), 4, "block0"
    activations, scores = plumbing.forward_activations(model, image, layer)
    # torchcam normalises A^n before upsampling (we after): build its masks to isolate the scales
    masks = plumbing.upsample(plumbing.normalize(activations), image.shape[-2:])[0]
    valid = torch.ones(len(masks), dtype=torch.bool)
    cumulative = sm.iscam_scales(steps)
    integrated = sm.integrated_masked_scores(model, image[0], masks[valid], 285, cumulative, 64)
    weights = torch.zeros(len(masks)).masked_scatter(valid, integrated)
    rebuilt = perturbation.scorecam_map(perturbation.scorecam_weights(weights, scores[0, 285], valid)[None],
                                        activations)[0]
    with ISCAM(model, target_layer=layer, num_samples=steps, input_shape=(3, 96, 96)) as extractor:
        model(image)
        theirs = extractor(285)[0][0]
    assert pearson(rebuilt, theirs) >= 0.999
    assert not torch.allclose(cumulative, sm.iscam_scales(steps, accumulate=False))


# --- bad parameters -------------------------------------------------------------------------

@pytest.mark.parametrize("method, params, message", [
    ("smoothgrad", {"sigma": -0.1}, "sigma"),
    ("smoothgrad", {"samples": 0}, "samples"),
    ("smoothgrad", {"base": "no-such-method"}, "unknown base"),
    ("smoothgrad", {"base": "scorecam"}, "not one"),
    ("smoothgrad", {"base": "smoothgrad"}, "not one"),
    ("smoothgradcam++", {"sigma": float("nan")}, "sigma"),
    ("sscam", {"samples": 0}, "samples"),
    ("integrated-gradients", {"steps": 0}, "steps"),
    ("integrated-gradcam", {"steps": 1.5}, "steps"),
    ("iscam", {"steps": 0}, "steps"),
    ("sscam", {"noise": "image"}, "noise"),
    ("integrated-gradients", {"baseline": torch.zeros(3, 10, 10)}, "baseline has shape"),
])
def test_bad_parameters_give_clear_errors(model, photo, method, params, message):
    with pytest.raises(ValueError, match=message):
        cs.explain(method, model, resized(photo, 64), **params)


@pytest.mark.parametrize("method, params", [("iscam", {"accumulate": 1}), ("integrated-gradcam", {"subtract_baseline": "yes"})])
def test_flags_must_be_booleans(model, photo, method, params):
    with pytest.raises(TypeError, match="True or False"):
        cs.explain(method, model, resized(photo, 64), **params)


def test_sscam_with_input_noise_averages_scores_of_noisy_images_masked_by_clean_masks(model, photo):
    image, layer, seed, sigma = resized(photo, 96), "block0", 4, 0.1
    ours, _ = sm.sscam(model, image, 285, layer, samples=2, sigma=sigma, noise="input", seed=seed)
    activations, scores = plumbing.forward_activations(model, image, layer)
    masks, valid = perturbation.scorecam_masks(activations[0], image.shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    std = sm.noise_scale(image, sigma)[0]
    noisy = [image[0] + torch.randn(image.shape[1:], generator=generator) * std for _ in range(2)]
    averaged = sum(perturbation.masked_class_scores(model, x, masks[valid], 285, 64) for x in noisy) / 2
    smoothed = torch.zeros(len(masks)).masked_scatter(valid, averaged)
    expected = perturbation.scorecam_map(perturbation.scorecam_weights(smoothed, scores[0, 285], valid)[None],
                                         activations)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6)
    on_masks, _ = sm.sscam(model, image, 285, layer, samples=2, sigma=sigma, seed=seed)
    assert pearson(ours, on_masks) < 0.9999


def test_integrated_gradients_attributions_rejects_a_baseline_of_the_wrong_type(model, photo):
    with pytest.raises(TypeError, match="baseline"):
        sm.integrated_gradients_attributions(model, resized(photo, 64), baseline="black")
