"""The scenario dataset of survey Section VI.C: synthetic scenes with exact ground truth.

Every image is drawn from a seed, so the same call gives the same pixels everywhere, and
every object comes with its exact pixel mask and box. Six shape classes (:data:`CLASSES`)
sit on varied backgrounds (gradients, low-frequency shading, noise) among clutter (thin
lines, dots) and distractors (irregular blobs in the same colours and textures as the
objects, often brighter), so a map that merely finds "the bright blob" does not win.

    from camsurvey.datasets import scenes
    batch = scenes.generate("small", 8, seed=0)  # a SceneBatch
    batch.images        # (N, 3, S, S) float in [0, 1]
    batch.labels        # (N,) class index of the target (largest) object
    batch.masks         # (N, S, S) bool: every object of class ``labels``
    batch.boxes         # (N, K, 4) per-object boxes (x0, y0, x1, y1), x1/y1 exclusive; -1 = none

Scenarios (:data:`SCENARIOS`): ``"large"`` and ``"small"`` (one object), ``"same"``
(several objects of one class), ``"different"`` (several objects, all of different classes)
and ``"multi_label"`` (several objects from two or three classes; ``multi_hot`` lists them).
Image ``i`` of a call depends only on ``(seed, scenario, i)`` and the options, so
``generate(s, 10, seed)`` is the first ten images of ``generate(s, 100, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

CLASSES = ("disc", "square", "triangle", "cross", "star", "ring")

# scenario -> (how many objects (low, high), object diameter in pixels at size 64 (low, high))
SCENARIOS = {
    "large": ((1, 1), (28, 44)),
    "small": ((1, 1), (12, 18)),
    "same": ((2, 4), (13, 20)),
    "different": ((2, 3), (13, 20)),
    "multi_label": ((2, 4), (12, 20)),
}
SINGLE_OBJECT = ("large", "small")
CUE_MODES = ("none", "class", "random")
CUE_SIZE = 5  # the spurious cue: a 5 x 5 white square with a black centre in the top-left corner
REFERENCE_SIZE = 64


@dataclass
class SceneBatch:
    """Images and their exact ground truth, as tensors (``K`` = most objects in one image).

    images: (N, 3, S, S) float in [0, 1].
    labels: (N,) long, the class of the target object (the largest one).
    multi_hot: (N, C) float, 1 for every class present.
    masks: (N, S, S) bool, the pixels of every object of class ``labels``.
    object_masks: (N, K, S, S) bool, one mask per object (all False where there is none).
    object_classes: (N, K) long, the class of each object, -1 where there is none.
    boxes: (N, K, 4) long, ``x0, y0, x1, y1`` of each object (x1, y1 exclusive), -1 where none.
    cue: (N,) bool, whether the spurious corner mark is drawn.
    """

    scenario: str
    images: torch.Tensor
    labels: torch.Tensor
    multi_hot: torch.Tensor
    masks: torch.Tensor
    object_masks: torch.Tensor
    object_classes: torch.Tensor
    boxes: torch.Tensor
    cue: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES

    @property
    def target_boxes(self) -> torch.Tensor:
        """(N, 4) box around ``masks`` (all objects of the target class)."""
        return mask_boxes(self.masks)

    def __getitem__(self, index) -> SceneBatch:
        """A sub-batch: ``scenes[:4]``, ``scenes[[0, 5]]`` (an int keeps the batch axis)."""
        if isinstance(index, int):
            index = [index]
        return SceneBatch(self.scenario, *(getattr(self, f.name)[index] for f in fields(self)[1:]))


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """The tight box ``x0, y0, x1, y1`` (x1, y1 exclusive) of each (..., S, S) mask; -1 if empty."""
    rows, columns = masks.any(dim=-1), masks.any(dim=-2)
    size = masks.shape[-1]
    index = torch.arange(size)

    def first_last(hits):
        first = torch.where(hits, index, size).amin(dim=-1)
        last = torch.where(hits, index, -1).amax(dim=-1) + 1
        return first, last

    (y0, y1), (x0, x1) = first_last(rows), first_last(columns)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return torch.where(masks.flatten(-2).any(-1, keepdim=True), boxes, torch.full_like(boxes, -1))


# ---------------------------------------------------------------------------- shapes
def shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of class ``name`` in local coordinates where the shape fits the unit disc."""
    if name == "disc":
        return u * u + v * v <= 1.0
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.52 ** 2)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.74
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if name == "triangle":  # equilateral, circumradius 1: three half-planes at distance 1/2
        inside = np.ones(u.shape, dtype=bool)
        for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            inside &= -(u * np.cos(angle) + v * np.sin(angle)) <= 0.5
        return inside
    if name == "star":  # five points, inner radius 0.45
        rho, theta = np.hypot(u, v), np.arctan2(v, u)
        sector = 2 * np.pi / 5
        phi = np.abs((theta % sector) - sector / 2)  # 0 at an inner vertex, sector/2 at a point
        phi = sector / 2 - phi  # angle from the nearest outer point
        p1 = np.array([1.0, 0.0])
        p2 = 0.45 * np.array([np.cos(sector / 2), np.sin(sector / 2)])
        normal = np.array([p2[1] - p1[1], p1[0] - p2[0]])
        edge = (normal @ p1) / (normal[0] * np.cos(phi) + normal[1] * np.sin(phi))
        return rho <= edge
    raise ValueError(f"unknown shape {name!r}; choose one of {CLASSES}")


def _luminance(color) -> float:
    return float(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2])


def _contrasting_color(rng, background_luminance: float) -> np.ndarray:
    best, best_gap = None, -1.0
    for _ in range(8):
        color = rng.uniform(0, 1, 3)
        gap = abs(_luminance(color) - background_luminance)
        if gap > best_gap:
            best, best_gap = color, gap
        if gap > 0.3:
            break
    assert best is not None  # the loop ran at least once
    return best


def _window(center, radius, size):
    """Slices of the square of half-side ``radius`` around ``center``, clipped to the image."""
    x0, y0 = (max(int(np.floor(c - radius)) - 1, 0) for c in center)
    x1, y1 = (min(int(np.ceil(c + radius)) + 2, size) for c in center)
    return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))


def _texture(rng, xx, yy, color) -> np.ndarray:
    """Solid, striped or checked fill in ``color`` (so colour and texture say nothing of the class)."""
    kind = rng.integers(3)
    shade = np.clip(color * rng.uniform(0.4, 0.7) + rng.uniform(0, 0.2), 0, 1)
    if kind == 0:
        return np.broadcast_to(color, xx.shape + (3,))
    if kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 6)
        pattern = ((xx * np.cos(angle) + yy * np.sin(angle)) // (period / 2)) % 2 == 1
    else:
        period = rng.uniform(3, 6)
        pattern = ((xx // period + yy // period) % 2) == 1
    return np.where(pattern[..., None], shade, color)


def _background(rng, size, yy, xx) -> np.ndarray:
    """A colour gradient, a few low-frequency waves of shading, and pixel noise."""
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(angle) + yy * np.sin(angle)) / size + 1) / 2
    image = a + (b - a) * np.clip(t, 0, 1)[..., None] * rng.uniform(0.2, 1.0)
    for _ in range(3):
        fx, fy = rng.uniform(-3, 3, 2) * 2 * np.pi / size
        wave = np.cos(fx * xx + fy * yy + rng.uniform(0, 2 * np.pi))
        image = image + wave[..., None] * rng.uniform(-0.06, 0.06, 3)
    return image + rng.normal(0, rng.uniform(0.01, 0.05), image.shape)


def _draw_clutter(rng, image, yy, xx, size):
    """Thin line segments and dots in random colours."""
    for _ in range(rng.integers(4, 11)):
        p = rng.uniform(0, size, 2)
        q = p + rng.normal(0, size / 4, 2)
        d = q - p
        window = _window((p + q) / 2, np.abs(d).max() / 2 + 2, size)
        x, y = xx[window], yy[window]
        t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1]) / max(d @ d, 1e-6), 0, 1)
        distance = np.hypot(x - p[0] - t * d[0], y - p[1] - t * d[1])
        image[window][distance < rng.uniform(0.5, 1.2)] = rng.uniform(0, 1, 3)
    for _ in range(rng.integers(3, 9)):
        c, r = rng.uniform(0, size, 2), rng.uniform(0.8, 2.0)
        window = _window(c, r, size)
        image[window][np.hypot(xx[window] - c[0], yy[window] - c[1]) <= r] = rng.uniform(0, 1, 3)


def _blob_mask(rng, xx, yy, center, radius) -> np.ndarray:
    """An irregular blob: a wobbly radius r(theta) that matches none of the classes."""
    rho = np.hypot(xx - center[0], yy - center[1])
    theta = np.arctan2(yy - center[1], xx - center[0])
    wobble = 1.0
    for k in (2, 3, 4):
        wobble = wobble + rng.uniform(0.08, 0.22) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return rho <= radius * wobble


def _place(rng, radii, size, forbidden, attempts=100, restarts=20):
    """Centres for circles of ``radii`` inside the image, disjoint from each other and ``forbidden``."""
    for _ in range(restarts):
        centers = []
        for radius in radii:
            low, high = radius + 1, size - radius - 1
            if low > high:
                return None
            for _ in range(attempts):
                c = rng.uniform(low, high, 2)
                if all(np.hypot(*(c - c2)) >= radius + r2 + 2 for c2, r2 in centers + forbidden):
                    centers.append((c, radius))
                    break
            else:
                break
        if len(centers) == len(radii):
            return centers
    return None


def _scene_rng(seed: int, scenario: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(SCENARIOS).index(scenario), index])


def render_scene(scenario: str, seed: int, index: int, size: int = REFERENCE_SIZE, num_objects=None,
                 cue: str = "none", cue_class: int = 0, distractors: bool = True):
    """One scene as numpy arrays: ``(image (S,S,3), classes (k,), masks (k,S,S))``, plus whether the cue is drawn.

    Objects are sorted largest first; the first is the target.
    """
    rng = _scene_rng(seed, scenario, index)
    (count_low, count_high), (d_low, d_high) = SCENARIOS[scenario]
    count = int(rng.integers(count_low, count_high + 1)) if num_objects is None else num_objects
    scale = size / REFERENCE_SIZE
    radii = sorted((rng.uniform(d_low, d_high, count) * scale / 2).tolist(), reverse=True)
    if scenario in SINGLE_OBJECT or scenario == "same":
        classes = [int(rng.integers(len(CLASSES)))] * count
    elif scenario == "different":
        classes = rng.permutation(len(CLASSES))[:count].tolist()
    else:
        pool = rng.permutation(len(CLASSES))[: min(count, int(rng.integers(2, 4)))]
        classes = [int(pool[i]) if i < len(pool) else int(rng.choice(pool)) for i in range(count)]
        classes = [classes[i] for i in rng.permutation(count)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.0
    image = _background(rng, size, yy, xx)
    _draw_clutter(rng, image, yy, xx, size)
    forbidden = [(np.array([CUE_SIZE / 2 + 1, CUE_SIZE / 2 + 1]), CUE_SIZE)] if cue != "none" else []
    placed = _place(rng, radii, size, forbidden)
    if placed is None:
        raise ValueError(
            f"cannot fit {count} objects of diameter up to {2 * radii[0]:.0f} px without overlap into a "
            f"{size} x {size} image; use a larger size or fewer objects"
        )
    if distractors:
        blob_radii = (rng.uniform(d_low, d_high, int(rng.integers(1, 3))) * scale / 2 * 0.8).tolist()
        for radius in blob_radii:
            center = rng.uniform(0, size, 2)
            color = np.clip(rng.uniform(0.4, 1.0, 3) + rng.uniform(0, 0.3), 0, 1)
            window = _window(center, radius * 1.7, size)
            blob = _blob_mask(rng, xx[window], yy[window], center, radius)
            image[window][blob] = _texture(rng, xx[window], yy[window], color)[blob]
    masks = []
    for (center, radius), class_index in zip(placed, classes):
        angle = rng.uniform(0, 2 * np.pi)
        window = _window(center, radius, size)
        dx, dy = xx[window] - center[0], yy[window] - center[1]
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / radius
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / radius
        mask = np.zeros((size, size), dtype=bool)
        mask[window] = shape_mask(CLASSES[class_index], u, v)
        inside = image[mask]
        color = _contrasting_color(rng, _luminance(inside.mean(axis=0)) if len(inside) else 0.5)
        local = mask[window]
        image[window][local] = _texture(rng, xx[window], yy[window], color)[local]
        masks.append(mask)
    drawn = (cue == "class" and classes[0] == cue_class) or (cue == "random" and bool(rng.integers(2)))
    if drawn:
        image[1:1 + CUE_SIZE, 1:1 + CUE_SIZE] = 1.0
        image[1 + CUE_SIZE // 2, 1 + CUE_SIZE // 2] = 0.0
    return np.clip(image, 0, 1).astype(np.float32), np.array(classes), np.stack(masks), drawn


def _check_arguments(scenario, n, seed, size, num_objects, cue, cue_class):
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}")
    for name, value in (("n", n), ("seed", seed), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 1:
        raise ValueError(f"n must be at least 1 (the number of images), got {n}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels (the methods need 32 x 32 images), got {size}")
    if num_objects is not None:
        if isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer)):
            raise TypeError(f"num_objects must be None or an int, got {type(num_objects).__name__}")
        if num_objects < 1:
            raise ValueError(f"num_objects must be at least 1 (a scene needs an object), got {num_objects}")
        if scenario in SINGLE_OBJECT and num_objects != 1:
            raise ValueError(f"scenario {scenario!r} has exactly one object; use 'same', 'different' or 'multi_label'")
        if scenario == "different" and num_objects > len(CLASSES):
            raise ValueError(f"'different' needs a class per object; at most {len(CLASSES)} objects")
        if scenario in ("same", "different", "multi_label") and num_objects < 2:
            raise ValueError(f"scenario {scenario!r} has several objects; num_objects must be at least 2")
    if cue not in CUE_MODES:
        raise ValueError(f"cue must be one of {CUE_MODES}, got {cue!r}")
    if not 0 <= cue_class < len(CLASSES):
        raise ValueError(f"cue_class must be a class index 0..{len(CLASSES) - 1}, got {cue_class}")


def generate(scenario: str, n: int, seed: int = 0, size: int = REFERENCE_SIZE, *, num_objects: int | None = None,
             cue: str = "none", cue_class: int = 0, distractors: bool = True, progress: bool = False) -> SceneBatch:
    """``n`` scenes of ``scenario`` (one of :data:`SCENARIOS`) with their exact ground truth.

    ``seed``: image ``i`` depends only on ``(seed, scenario, i)`` and the options.
    ``size``: image side in pixels (>= 32); object sizes scale with it (defined at 64).
    ``num_objects``: fix the number of objects (default: the scenario's range).
    ``cue``: the spurious corner mark: ``"none"``; ``"class"``, drawn exactly when the target
    is ``cue_class`` (the biased training set); ``"random"``, drawn on half the images at random.
    ``distractors``: draw the irregular distractor blobs (on by default).
    ``progress``: show a tqdm progress bar.
    """
    _check_arguments(scenario, n, seed, size, num_objects, cue, cue_class)
    indices = range(n)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"scenes {scenario}", unit="img")
    scenes = [render_scene(scenario, seed, i, size, num_objects, cue, cue_class, distractors) for i in indices]
    most = max(len(classes) for _, classes, _, _ in scenes)
    images = torch.from_numpy(np.stack([image for image, _, _, _ in scenes])).permute(0, 3, 1, 2).contiguous()
    object_masks = torch.zeros(n, most, size, size, dtype=torch.bool)
    object_classes = torch.full((n, most), -1, dtype=torch.long)
    for i, (_, classes, masks, _) in enumerate(scenes):
        object_masks[i, : len(classes)] = torch.from_numpy(masks)
        object_classes[i, : len(classes)] = torch.from_numpy(classes)
    labels = object_classes[:, 0].clone()
    multi_hot = torch.zeros(n, len(CLASSES))
    for k in range(most):
        present = object_classes[:, k] >= 0
        multi_hot[present, object_classes[present, k]] = 1.0
    target_masks = (object_masks & (object_classes == labels[:, None])[..., None, None]).any(dim=1)
    return SceneBatch(scenario, images, labels, multi_hot, target_masks, object_masks, object_classes,
                      mask_boxes(object_masks), torch.tensor([drawn for *_, drawn in scenes]))


def generate_mixed(scenarios, n: int, seed: int = 0, size: int = REFERENCE_SIZE, **options) -> SceneBatch:
    """``n`` scenes split evenly over single-object ``scenarios`` and interleaved (image i from scenario i % k)."""
    scenarios = list(scenarios)
    if not scenarios or any(s not in SINGLE_OBJECT for s in scenarios):
        raise ValueError(f"generate_mixed mixes single-object scenarios {SINGLE_OBJECT}, got {scenarios}")
    parts = [generate(s, -(-n // len(scenarios)), seed, size, **options) for s in scenarios]
    order = torch.arange(n)
    part, row = order % len(parts), order // len(parts)

    def interleave(name):
        stacked = torch.stack([getattr(p, name) for p in parts])  # (k, n_k, ...)
        return stacked[part, row]

    return SceneBatch("+".join(scenarios), *(interleave(f.name) for f in fields(SceneBatch)[1:]))


class SceneDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` of scenes, rendered on demand: item ``i`` is ``(image, target)``.

    ``target`` is the class index, or the multi-hot vector when ``multi_label=True``.
    Item ``i`` equals image ``i`` of ``generate(scenario, n, seed, size, ...)``.
    """

    def __init__(self, scenario: str, n: int, seed: int = 0, size: int = REFERENCE_SIZE, *, multi_label: bool = False,
                 **options):
        _check_arguments(scenario, n, seed, size, options.get("num_objects"), options.get("cue", "none"),
                         options.get("cue_class", 0))
        self.scenario, self.n, self.seed, self.size = scenario, n, seed, size
        self.multi_label, self.options = multi_label, options

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} scenes")
        image, classes, _, _ = render_scene(self.scenario, self.seed, index, self.size, **self.options)
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        if self.multi_label:
            target = torch.zeros(len(CLASSES))
            target[torch.from_numpy(classes)] = 1.0
            return image, target
        return image, int(classes[0])


def show(batch: SceneBatch, count: int = 4, axes=None, title: str | None = None):
    """Draw the first ``count`` scenes of ``batch`` with every object's box (white; the target
    class in yellow) and, below each, its target mask. Returns the figure."""
    import matplotlib.pyplot as plt

    count = min(count, len(batch))
    if axes is None:
        _, axes = plt.subplots(2, count, figsize=(1.8 * count, 3.8), squeeze=False)
    for i in range(count):
        top, bottom = axes[0][i], axes[1][i]
        top.imshow(batch.images[i].permute(1, 2, 0).numpy())
        for k in range(batch.object_classes.shape[1]):
            if batch.object_classes[i, k] < 0:
                continue
            x0, y0, x1, y1 = batch.boxes[i, k].tolist()
            color = "yellow" if batch.object_classes[i, k] == batch.labels[i] else "white"
            top.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, lw=1))
        present = [CLASSES[c] for c in batch.multi_hot[i].nonzero().flatten().tolist()]
        top.set_title(f"{CLASSES[batch.labels[i]]}" + (f"\n+{','.join(p for p in present if p != CLASSES[batch.labels[i]])}"
                                                      if len(present) > 1 else ""), fontsize=7)
        bottom.imshow(batch.masks[i].numpy(), cmap="gray")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        axes[0][0].set_ylabel(title, fontsize=8)
        axes[1][0].set_ylabel("mask", fontsize=8)
    return axes[0][0].figure
