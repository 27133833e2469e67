"""The careful reference pyai's fast path is checked against.

Pillow full decode, antialiased BILINEAR resize of the classifier's crop region
(``Image.resize``'s box, the region computed on the full-resolution image)
straight to the model's input size, same interpreter and post-processing: what
"labelled correctly" means in the tests and the bench. Slow on purpose (no
DCT-domain downscale, no reuse).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .classifier import Classifier
from .labels import Result
from .model_card import pixels_into


def reference_label(clf: Classifier, data: bytes, k: int = 1) -> Result:
    """Top-k of ``data`` (encoded image bytes) by the careful reference path."""
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = clf.model.input_size
    box = clf.crop.box(im.width, im.height, (w, h))
    arr = np.asarray(im.resize((w, h), Image.BILINEAR, box=box))
    with clf._lock:
        pixels_into(clf.card.norm, arr, clf.model.input_slot(0))
        raw = clf.model.run()[0]
        return clf.results(raw, k)
