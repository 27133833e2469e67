"""Synthetic fixed-camera sequences from the sample photos, for the unchanged-frame gate.

A fixed camera sends the same scene again and again, but never the same bytes:
each frame has its own sensor noise, is JPEG-encoded again at camera quality,
may be shifted by a pixel of mount jitter, and the light drifts. Scenes change
by cuts (another photo) and by objects crossing the view. ``frames()`` makes
such a sequence as camera JPEGs; ``SEQUENCES`` are the ones the gate study and
the bench run. Needs NumPy, Pillow and simplejpeg (pyai's own dependencies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import simplejpeg
from PIL import Image

# Noise fields drawn once and cut at random offsets: drawing a fresh Gaussian
# field for every 720p frame costs 30 ms and adds nothing the offsets do not.
_NOISE_BANK = 4


@dataclass(frozen=True)
class Camera:
    size: Tuple[int, int] = (1280, 720)  # (width, height)
    noise: float = 2.0  # sensor noise, standard deviation in grey levels
    quality: int = 85  # JPEG quality of each frame
    jitter: int = 0  # largest shift of a frame, pixels in each direction
    drift: float = 0.0  # brightness change over the whole sequence (-0.3: 30% darker at the end)


@dataclass(frozen=True)
class Scene:
    photo: str  # sample photo file name
    frames: int
    # A crop of another photo crossing the view left to right: (photo, side in pixels).
    crossing: Optional[Tuple[str, int]] = None


@dataclass(frozen=True)
class SequenceSpec:
    name: str
    scenes: Tuple[Scene, ...]
    camera: Camera = field(default_factory=Camera)


def fit(photo: Image.Image, size: Tuple[int, int]) -> np.ndarray:
    """The photo scaled and centre-cropped to fill ``size`` (a camera's view)."""
    w, h = size
    scale = max(w / photo.width, h / photo.height)
    im = photo.convert("RGB").resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    return np.asarray(im.crop((left, top, left + w, top + h)))


def frames(spec: SequenceSpec, photos: Path, seed: int = 0) -> Iterator[bytes]:
    """The sequence's frames as JPEG bytes, deterministically from ``seed``."""
    cam = spec.camera
    rng = np.random.default_rng(seed)
    w, h = cam.size
    j = cam.jitter
    bank = [rng.normal(0.0, cam.noise, (h + 64, w + 64, 3)).astype(np.float32) for _ in range(_NOISE_BANK)]
    total = sum(s.frames for s in spec.scenes)
    t = 0
    for scene in spec.scenes:
        base = fit(Image.open(photos / scene.photo), (w + 2 * j, h + 2 * j)).astype(np.float32)
        patch = None
        if scene.crossing is not None:
            other, side = scene.crossing
            patch = fit(Image.open(photos / other), (side, side)).astype(np.float32)
        for i in range(scene.frames):
            dx, dy = (int(v) for v in rng.integers(-j, j + 1, 2)) if j else (0, 0)
            img = base[j + dy : j + dy + h, j + dx : j + dx + w].copy()
            if patch is not None:
                side = patch.shape[0]
                x = int((w + side) * i / max(1, scene.frames - 1)) - side
                y = (h - side) // 2
                x0, x1 = max(0, x), min(w, x + side)
                if x1 > x0:
                    img[y : y + side, x0:x1] = patch[:, x0 - x : x1 - x]
            img *= 1.0 + cam.drift * t / max(1, total - 1)
            if cam.noise:
                ox, oy = (int(v) for v in rng.integers(0, 64, 2))
                img += bank[int(rng.integers(len(bank)))][oy : oy + h, ox : ox + w]
            out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            yield simplejpeg.encode_jpeg(out, quality=cam.quality, colorspace="RGB", colorsubsampling="420")
            t += 1


def _spec(name: str, scenes: Sequence[Scene], **camera) -> SequenceSpec:
    return SequenceSpec(name, tuple(scenes), Camera(**camera))


# The study's synthetic sequences (720p unless named otherwise).
SEQUENCES: Dict[str, SequenceSpec] = {
    s.name: s
    for s in [
        _spec("still", [Scene("cat_720p.jpg", 200)], noise=2.0, quality=85),
        _spec("noise+jitter", [Scene("cat_720p.jpg", 200)], noise=5.0, quality=75, jitter=1),
        _spec("lighting drift", [Scene("cat_720p.jpg", 200)], noise=2.0, jitter=1, drift=-0.4),
        _spec(
            "scene cuts",
            [Scene(p, 40) for p in ("cat_720p.jpg", "owl.jpg", "hot_dog.jpg", "parrot.jpg", "pets.jpg", "face.jpg")],
            noise=3.0, quality=80, jitter=1,
        ),
        _spec(
            "object crossing",
            [Scene("kite_and_cold.jpg", 120, crossing=("parrot.jpg", 360)), Scene("owl.jpg", 120, crossing=("hot_dog.jpg", 540))],
            noise=2.0, jitter=1,
        ),
        _spec("still 1080p", [Scene("cat_1080p.jpg", 120)], size=(1920, 1080), noise=2.0, quality=85, jitter=1),
    ]
}

def fixed_camera(size: Tuple[int, int] = (1280, 720), photos: Sequence[str] = ("cat_720p.jpg", "owl.jpg", "parrot.jpg"),
                 per_scene: int = 100) -> SequenceSpec:
    """The bench's fixed-camera row: a camera on one scene with noise, jitter and
    slowly dimming light, and a cut to another scene every ``per_scene`` frames."""
    return _spec("fixed camera", [Scene(p, per_scene) for p in photos], size=size, noise=3.0, quality=80, jitter=1, drift=-0.2)


def all_frames(spec: SequenceSpec, photos: Path, seed: int = 0) -> List[bytes]:
    return list(frames(spec, photos, seed))
