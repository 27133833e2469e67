"""One answer from the scores of several views of a frame (``crop_mode=squares``).

Each view is a square of the frame run through the model; its scores are
probabilities (dequantized softmax). How they become one row of scores:

* ``mean``: the mean probability of each class over the views (the usual
  multi-crop evaluation of AlexNet/ResNet): a class seen in one square only
  is diluted by the others;
* ``max``: each class's highest probability in any view: a subject in one
  square keeps its full score, but so does a wrong guess in another;
* ``confident``: the scores of the one view whose top class is the most
  confident.
"""

from __future__ import annotations

import numpy as np

#: The ways of merging, for ``crop_merge``.
MERGES = ("mean", "max", "confident")


def merge_scores(probs: np.ndarray, how: str) -> np.ndarray:
    """One row of scores from ``probs`` (views, classes), merged ``how`` (see MERGES)."""
    if how == "mean":
        return probs.mean(axis=0)
    if how == "max":
        return probs.max(axis=0)
    if how == "confident":
        return probs[int(np.argmax(probs.max(axis=1)))]
    raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {how!r}")
