"""Synthetic fixed-camera sequences from the sample photos, for the unchanged-frame gate.

A fixed camera sends the same scene again and again, but never the same bytes:
each frame has its own sensor noise, is JPEG-encoded again at camera quality,
may be shifted by a pixel of mount jitter, and the light drifts. Scenes change
by cuts (another photo) and by objects crossing the view. ``frames()`` makes
such a sequence as camera JPEGs; ``SEQUENCES`` are the ones the gate study and
the bench run; ``kinds()`` the study's kinds of scene (indoor, outdoor, low
contrast, night, scenes the model is unsure of, a small moving object, a slow
pan, a flickering light). Needs NumPy, Pillow and simplejpeg (pyai's own
dependencies).
"""

from __future__ import annotations

import io
import math
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
    wobble: float = 0.0  # a slow gain drift, +-this (0.03: +-3%) over a period of 97 frames
    flicker: float = 0.0  # a light flickering, gain +-this, over flicker_period frames
    flicker_period: float = 3.3
    brightness: float = 1.0  # the scene's light (0.12: night-like), before the noise
    contrast: float = 1.0  # around the scene's mean (0.3: fog, low contrast)
    pan: float = 0.0  # pixels a frame the view moves right (a slow pan)
    encoder: str = "simplejpeg"  # or "pillow" (4:2:0 too)


@dataclass(frozen=True)
class Scene:
    photo: str  # sample photo file name
    frames: int
    # A crop of another photo crossing the view left to right: (photo, side in pixels).
    crossing: Optional[Tuple[str, int]] = None
    # A small object moving right: (photo, its share of each side of the view,
    # pixels a frame), from a quarter of the view in.
    mover: Optional[Tuple[str, float, float]] = None


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


def _encode(out: np.ndarray, cam: Camera) -> bytes:
    if cam.encoder == "pillow":
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=cam.quality, subsampling=2)
        return buf.getvalue()
    return simplejpeg.encode_jpeg(out, quality=cam.quality, colorspace="RGB", colorsubsampling="420")


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
        travel = int(math.ceil(cam.pan * scene.frames))
        base = fit(Image.open(photos / scene.photo), (w + 2 * j + travel, h + 2 * j)).astype(np.float32)
        if cam.contrast != 1.0:
            base = base.mean() + (base - base.mean()) * cam.contrast
        patch = None
        if scene.crossing is not None:
            other, side = scene.crossing
            patch = fit(Image.open(photos / other), (side, side)).astype(np.float32)
        mover = None
        if scene.mover is not None:
            other, share, _ = scene.mover
            mover = fit(Image.open(photos / other), (round(w * share), round(h * share))).astype(np.float32)
        for i in range(scene.frames):
            dx, dy = (int(v) for v in rng.integers(-j, j + 1, 2)) if j else (0, 0)
            x_view = j + dx + int(round(cam.pan * i))
            img = base[j + dy : j + dy + h, x_view : x_view + w].copy()
            if patch is not None:
                side = patch.shape[0]
                x = int((w + side) * i / max(1, scene.frames - 1)) - side
                y = (h - side) // 2
                x0, x1 = max(0, x), min(w, x + side)
                if x1 > x0:
                    img[y : y + side, x0:x1] = patch[:, x0 - x : x1 - x]
            if mover is not None:
                mh, mw = mover.shape[:2]
                x = min(w - mw, w // 4 + int(round(scene.mover[2] * i)))
                y = (h - mh) // 2
                img[y : y + mh, x : x + mw] = mover
            gain = (1.0 + cam.drift * t / max(1, total - 1) + cam.wobble * math.sin(2 * math.pi * t / 97)
                    + cam.flicker * math.sin(2 * math.pi * t / cam.flicker_period))
            img *= gain * cam.brightness
            if cam.noise:
                ox, oy = (int(v) for v in rng.integers(0, 64, 2))
                img += bank[int(rng.integers(len(bank)))][oy : oy + h, ox : ox + w]
            out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            yield _encode(out, cam)
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


# The study's kinds of scene, as a camera the gate was not tuned on would film
# them: 720p, fresh sensor noise (sigma 2.5) and a +-3% gain drift on every
# frame, Pillow JPEG q85 4:2:0, a cut to another scene every SCENE_FRAMES frames.
SCENE_FRAMES = 60
KIND_CAMERA = dict(noise=2.5, quality=85, wobble=0.03, encoder="pillow")
# Each kind: the pool its scenes come from, and what it does to the camera or scene.
KINDS: Dict[str, Tuple[str, dict]] = {
    "indoor": ("indoor", {}),
    "outdoor": ("outdoor", {}),
    "low contrast": ("any", {"contrast": 0.3}),
    "night": ("any", {"brightness": 0.15}),
    "model unsure": ("unsure", {}),
    "small moving object": ("any", {"mover": 6.0}),
    "slow pan": ("any", {"pan": 1.0}),
    "flickering light": ("any", {"flicker": 0.1}),
}


def kinds(pools: Dict[str, Sequence[str]], scenes: int = 4, per_scene: int = SCENE_FRAMES,
          camera: Optional[dict] = None) -> Dict[str, SequenceSpec]:
    """One sequence per kind of scene, ``scenes`` scenes of ``per_scene`` frames, the
    photos taken in turn from ``pools`` (file names under the photos folder, or
    absolute paths): "indoor", "outdoor", "unsure" (photos the model is unsure
    of) and "any"; filmed by KIND_CAMERA, or by ``camera`` (Camera's fields)."""
    out: Dict[str, SequenceSpec] = {}
    for name, (pool_name, how) in KINDS.items():
        pool = list(pools[pool_name])
        picked = [pool[i % len(pool)] for i in range(scenes)]
        cam = dict(KIND_CAMERA if camera is None else camera)
        cam.update({k: v for k, v in how.items() if k != "mover"})
        if "mover" in how:
            others = list(pools["any"])
            seq = [Scene(p, per_scene, mover=(others[(i + 1) % len(others)], 0.2, how["mover"]))
                   for i, p in enumerate(picked)]
        else:
            seq = [Scene(p, per_scene) for p in picked]
        out[name] = _spec(name, seq, **cam)
    return out


def all_frames(spec: SequenceSpec, photos: Path, seed: int = 0) -> List[bytes]:
    return list(frames(spec, photos, seed))
