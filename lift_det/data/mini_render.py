"""Drawing of the mini COCO images: 1-6 non-overlapping shapes of three classes with random sizes
(COCO small, medium and large), colors and shading on a smooth, textured background. Shapes are
rasterized with pycocotools from the very polygons stored in the annotations."""

import colorsys
import io
import numpy as np
from typing import Any, Dict, List, Tuple
import cv2
import pycocotools.mask as mask_util
from PIL import Image

MINI_CLASSES: Tuple[str, ...] = ("square", "disc", "triangle")

# Object "sizes" are the side of a square of the same area (pixels); buckets: COCO small
# (area < 32^2), medium, large (area > 96^2). Probabilities of the buckets.
_SIZE_BUCKETS: Tuple[Tuple[float, float, float], ...] = (
    (0.4, 12.0, 30.0),
    (0.4, 36.0, 90.0),
    (0.2, 100.0, 135.0),
)
_MAX_OBJECTS = 6
_PLACEMENT_TRIES = 50
_MIN_GAP = 3  # pixels kept free between objects
_GAP_KERNEL = np.ones((2 * _MIN_GAP + 1, 2 * _MIN_GAP + 1), dtype=np.uint8)  # square dilation
_DISC_POINTS = 24


def _smooth_noise(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """(size, size, 3) float32 smooth noise in about [-1, 1], a (grid, grid) one upsampled."""
    low = rng.normal(0.0, 1.0, size=(3, grid, grid)).astype(np.float32)
    channels = [
        np.asarray(Image.fromarray(c).resize((size, size), Image.Resampling.BICUBIC)) for c in low
    ]
    return np.stack(channels, axis=-1)


def _linear_ramp(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A linear ramp in [-0.5, 0.5] along a random direction over the points (xs, ys)."""
    theta = rng.uniform(0.0, 2.0 * np.pi)
    t = xs * np.float32(np.cos(theta)) + ys * np.float32(np.sin(theta))
    t_min = t.min()
    return (t - t_min) / max(float(t.max() - t_min), 1e-6) - 0.5


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float32: a muted color, low-frequency blobs, a gradient, fine noise."""
    base = rng.uniform(80.0, 170.0) + rng.uniform(-20.0, 20.0, size=3)
    img = np.broadcast_to(base.astype(np.float32), (size, size, 3)).copy()
    img += rng.uniform(12.0, 28.0) * _smooth_noise(rng, size, int(rng.integers(3, 7)))
    img += rng.uniform(4.0, 10.0) * _smooth_noise(rng, size, int(rng.integers(12, 20)))
    coords = np.arange(size, dtype=np.float32)
    ramp = _linear_ramp(rng, coords[None, :], coords[:, None])
    img += (np.float32(rng.uniform(0.0, 40.0)) * ramp)[..., None]
    img += np.float32(3.0) * rng.standard_normal(size=(size, size, 1), dtype=np.float32)
    return img


def _sample_size(rng: np.random.Generator, image_size: int) -> float:
    """An object size (side of a square of the same area) from a random size bucket."""
    probs = np.array([b[0] for b in _SIZE_BUCKETS])
    lo, hi = _SIZE_BUCKETS[int(rng.choice(len(_SIZE_BUCKETS), p=probs / probs.sum()))][1:]
    hi = min(hi, 0.53 * image_size)
    lo = min(lo, hi)
    return float(rng.uniform(lo, hi))


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_polygon(rng: np.random.Generator, category: int, size: float) -> np.ndarray:
    """(N, 2) vertices (x, y) around the origin of a shape of MINI_CLASSES[category] whose area
    is that of a square of side ``size``."""
    name = MINI_CLASSES[category]
    if name == "square":
        h = size / 2.0
        square = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0.0, np.pi / 2)
        return _rotate(square, angle)
    if name == "disc":
        aspect = rng.uniform(0.75, 1.0)
        a = size / np.sqrt(np.pi * aspect)  # pi * a * b == size ** 2
        t = np.linspace(0.0, 2.0 * np.pi, _DISC_POINTS, endpoint=False) + rng.uniform(0, np.pi)
        ellipse = np.stack([a * np.cos(t), a * aspect * np.sin(t)], axis=1)
        return _rotate(ellipse, rng.uniform(0.0, np.pi))
    radius = size * np.sqrt(4.0 / (3.0 * np.sqrt(3.0)))  # equilateral of area size ** 2
    t = np.array([0.5, 0.5 + 2.0 / 3.0, 0.5 + 4.0 / 3.0]) * np.pi
    base = radius * np.stack([np.cos(t), np.sin(t)], axis=1)
    while True:
        tri = base + rng.normal(0.0, 0.12 * radius, size=(3, 2))
        if _min_angle_deg(tri) >= 35.0:
            break
    tri -= tri.mean(axis=0)
    return _rotate(tri, rng.uniform(0.0, 2.0 * np.pi))


def _min_angle_deg(tri: np.ndarray) -> float:
    angles = []
    for i in range(3):
        u = tri[(i + 1) % 3] - tri[i]
        v = tri[(i + 2) % 3] - tri[i]
        cos = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-9)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return float(min(angles))


def _object_color(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated RGB color (float, 0-255) far enough from the background color."""
    best, best_dist = None, -1.0
    for _ in range(20):
        hsv = rng.uniform(0.0, 1.0), rng.uniform(0.55, 1.0), rng.uniform(0.3, 1.0)
        rgb = 255.0 * np.array(colorsys.hsv_to_rgb(*hsv))
        dist = float(np.linalg.norm(rgb - background))
        if dist >= 90.0:
            return rgb
        if dist > best_dist:
            best, best_dist = rgb, dist
    return best


def render_image(
    rng: np.random.Generator, size: int
) -> Tuple[np.ndarray, List[Tuple[int, List[float]]]]:
    """One (size, size, 3) uint8 image and its objects as (category index, flat polygon)."""
    img = _background(rng, size)
    occupied = np.zeros((size, size), dtype=bool)
    specs = [
        (_sample_size(rng, size), int(rng.integers(len(MINI_CLASSES))))
        for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1)))
    ]
    specs.sort(key=lambda s: -s[0])  # place large objects first, they are the hardest to fit
    objects = []
    for obj_size, category in specs:
        for _ in range(_PLACEMENT_TRIES):
            poly = _shape_polygon(rng, category, obj_size)
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            if np.any(hi - lo > size - 3):
                continue
            center = rng.uniform(1.0 - lo, size - 1.0 - hi)
            if occupied[int(center[1]), int(center[0])]:
                continue  # cheap early rejection: all shapes contain their center
            poly = np.round(poly + center, 2)
            flat = poly.reshape(-1).tolist()
            # work on a crop around the object, with room for the dilation
            x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int) - _MIN_GAP - 1, 0)
            x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + _MIN_GAP + 2, size)
            full_mask = mask_util.decode(mask_util.frPyObjects([flat], size, size))[:, :, 0]
            mask = full_mask[y0:y1, x0:x1].astype(bool)
            free = ~occupied[y0:y1, x0:x1]
            if not mask.any() or not free[mask].all():
                continue
            occupied[y0:y1, x0:x1] |= cv2.dilate(mask.astype(np.uint8), _GAP_KERNEL) > 0
            crop = img[y0:y1, x0:x1]
            color = _object_color(rng, crop[mask].mean(axis=0))
            ys, xs = np.nonzero(mask)
            shade = 1.0 + rng.uniform(0.15, 0.45) * _linear_ramp(
                rng, xs.astype(np.float32), ys.astype(np.float32)
            )
            noise = rng.normal(0.0, 5.0, size=(len(ys), 1))
            crop[ys, xs] = color[None, :] * shade[:, None] + noise
            objects.append((category, flat))
            break
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects


def render_coco_image(
    rng: np.random.Generator, image_size: int, image_id: int, first_annotation_id: int
) -> Tuple[bytes, List[Dict[str, Any]]]:
    """One image's JPEG bytes and COCO annotations, numbered from ``first_annotation_id``."""
    pixels, objects = render_image(rng, image_size)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95, subsampling=0)
    annotations = []
    for category, flat in objects:
        # area and box of the rasterized polygon, i.e. of the drawn pixels and of annToMask
        rle = mask_util.frPyObjects([flat], image_size, image_size)[0]
        annotations.append(
            {
                "id": first_annotation_id + len(annotations),
                "image_id": image_id,
                "category_id": category + 1,
                "segmentation": [flat],
                "area": float(mask_util.area(rle)),
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    return buf.getvalue(), annotations
