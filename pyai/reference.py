"""The careful reference pyai's fast path is checked against.

Pillow full decode, antialiased BILINEAR resize of each of the classifier's
views of the frame (``Image.resize``'s box, the region computed on the
full-resolution image) straight to the model's input size (a letterbox's to
its placed size, on mid-grey), one invoke per view, the views' probabilities
merged as the classifier merges them, same post-processing: what "labelled
correctly" means in the tests and the bench. Slow on purpose (no DCT-domain
downscale, no reuse, no batch).
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
    size = clf.model.input_size
    crop = clf.crop
    place = crop.placement(im.width, im.height, size)
    with clf._lock:
        rows = []
        for box in crop.views(im.width, im.height, size):
            if place is None:
                arr = np.asarray(im.resize(size, Image.BILINEAR, box=box))
            else:
                x0, y0, w, h = place
                canvas = Image.new("RGB", size, (128, 128, 128))
                canvas.paste(im.resize((w, h), Image.BILINEAR, box=box), (x0, y0))
                arr = np.asarray(canvas)
            pixels_into(clf.card.norm, arr, clf.model.input_slot(0))
            rows.append(clf.model.run()[0].copy())
        if len(rows) == 1:
            return clf.results(rows[0], k)
        return clf.results(clf.merge_views(np.stack([clf.model.dequantize(r) for r in rows])), k)
