"""Draw docs/architecture.png, the picture of docs/architecture.md.

    python docs/architecture.py        # any Python with matplotlib, e.g. .tox/bench/bin/python

The picture is data: boxes (module, what it does) and arrows; edit them here,
run this again and commit the PNG beside it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_suffix(".png")

STAGE, GLUE, SIDE, NATIVE, HOST = "#dbe9f6", "#e8f4dc", "#fbe9d0", "#eeeeee", "#f4dada"
# Rows from top to bottom: (y of the lower edge, height, x of the first box, gap,
# boxes as (name, width, title, modules, colour)).
ROWS = [
    (8.2, 1.3, 0.2, 1.0, [
        ("host", 3.2, "eKuiper (kuiperd)", "a rule: SELECT labelImage(self)\nbase64 frame over IPC, 5 s per reply", HOST),
        ("glue", 4.6, "plugin glue: pyai/plugin/",
         "main.py, runtime.py, sp.py: the protocol\nfunctions.py: labelImage, labelImages, pyaiStats", GLUE),
        ("guardian", 4.0, "guardian", "guardian.py: restarts a dead plugin process\ninstance.py: one serving process", SIDE),
    ]),
    (6.8, 0.8, 0.2, 0.3, [
        ("classifier", 13.8, "classifier.py: Classifier, the Python API; runs the stages below for one frame", "", GLUE),
    ]),
    # The data path; a stage's title is its name.
    (4.6, 1.7, 0.2, 0.3, [(name, width, name, modules, STAGE) for name, width, modules in [
        ("bytes", 2.1, "source.py\nbase64 or raw,\nsize limit"),
        ("header", 2.1, "header.py\nsize, cost, truncation:\nrefused before a pixel"),
        ("frame", 2.3, "decode.py\ndecode_jpeg.py (DCT scale)\ndecode_pillow.py"),
        ("tensor", 2.1, "resize.py, crop.py\nregion resized into\nthe input tensor"),
        ("scores", 1.9, "model.py\nLiteRT invoke"),
        ("labels", 1.8, "labels.py\ntop-k list"),
    ]]),
    (2.2, 1.6, 2.6, 0.3, [
        ("gate", 4.7, "gate (skip_unchanged)", "gate.py: per call site, a frame that looks like\nthe last one gets its "
         "scores; signature from the\nJPEG's DC coefficients or from the tensor", SIDE),
        ("engine", 6.4, "engine (labelImages, submit)", "engine.py: decoder threads fill tensor slots,\none inference "
         "thread runs batches\nbatching.py: the model rewritten for N frames; stats.py", SIDE),
    ]),
    (0.2, 1.2, 0.2, 0.3, [
        ("native", 13.8, "native_preproc/ (C)", "native_jpeg: one JPEG on several cores    native_preproc: the fused "
         "resize    native_dcsig: the gate's DC walk", NATIVE),
    ]),
]


def _place(rows: list) -> dict:
    """name -> (x, y, width, height, title, modules, colour), boxes laid left to right."""
    boxes = {}
    for y, height, x, gap, row in rows:
        for name, width, title, modules, colour in row:
            boxes[name] = (x, y, width, height, title, modules, colour)
            x += width + gap
    return boxes


BOXES = _place(ROWS)
# (from, to, label); each arrow joins the nearest sides of two boxes.
ARROWS = [
    ("host", "glue", ""),
    ("glue", "host", ""),
    ("guardian", "glue", "watches"),
    ("bytes", "header", ""),
    ("header", "frame", ""),
    ("frame", "tensor", ""),
    ("tensor", "scores", ""),
    ("scores", "labels", ""),
    ("header", "gate", "signature"),
]
# Arrows drawn as a path of points (the last segment gets the head), with a label at a point.
PATHS = [
    ([(6.2, 3.8), (6.2, 4.3), (13.1, 4.3), (13.1, 4.6)], "same scene: its stored scores", (8.6, 4.44)),
    ([(10.95, 3.8), (10.95, 4.6)], "N frames, one invoke", (12.45, 3.98)),
]


def _centre(name: str) -> tuple:
    x, y, w, h = BOXES[name][:4]
    return x + w / 2, y + h / 2


def _anchor(src: str, dst: str) -> tuple:
    """The points where the straight line between two boxes' centres leaves them."""
    def edge(name: str, toward: tuple) -> tuple:
        x, y, w, h = BOXES[name][:4]
        cx, cy = x + w / 2, y + h / 2
        dx, dy = toward[0] - cx, toward[1] - cy
        scale = min((w / 2) / abs(dx) if dx else float("inf"), (h / 2) / abs(dy) if dy else float("inf"))
        return cx + dx * scale, cy + dy * scale

    return edge(src, _centre(dst)), edge(dst, _centre(src))


def draw(out: Path = OUT) -> None:
    fig, ax = plt.subplots(figsize=(14.5, 10))
    ax.set_xlim(0, 14.2)
    ax.set_ylim(0, 9.7)
    ax.axis("off")
    for x, y, w, h, title, body, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=colour, edgecolor="#555555", linewidth=1.2))
        if body:
            ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=11, fontweight="bold")
            ax.text(x + w / 2, y + h - 0.55, body, ha="center", va="top", fontsize=8.5, linespacing=1.35)
        else:
            ax.text(x + w / 2, y + h / 2, title, ha="center", va="center", fontsize=10.5, fontweight="bold")
    for src, dst, label in ARROWS:
        (x0, y0), (x1, y1) = _anchor(src, dst)
        if (dst, src) in {(a, b) for a, b, _ in ARROWS}:
            # A pair both ways: offset each so they do not overlap.
            off = 0.18 if src < dst else -0.18
            y0, y1 = y0 + off, y1 + off
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1.4, shrinkA=2, shrinkB=2))
        if label:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, label, ha="center", va="bottom", fontsize=8.5,
                    color="#333333", backgroundcolor="white")
    for points, label, (lx, ly) in PATHS:
        xs, ys = zip(*points)
        ax.plot(xs[:-1], ys[:-1], color="#333333", linewidth=1.4)
        ax.annotate("", xy=points[-1], xytext=points[-2],
                    arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1.4, shrinkA=0, shrinkB=2))
        ax.text(lx, ly, label, ha="center", va="center", fontsize=8.5, color="#333333")
    # The glue hands frames to the classifier; the classifier's row is the data path.
    gx, gy = _centre("glue")
    ax.annotate("", xy=(gx, 7.6), xytext=(gx, 8.2),
                arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1.4))
    ax.annotate("", xy=(1.25, 6.3), xytext=(1.25, 6.8),
                arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=1.4))
    ax.text(3.9, 8.42, "calls", ha="center", va="center", fontsize=8.5, color="#333333")
    ax.text(7.1, 6.45, "bytes -> frame -> tensor -> scores -> labels (one frame: labelImage, Classifier.label)",
            ha="center", va="center", fontsize=9.5, style="italic")
    ax.text(7.1, 1.75, "C extensions the stages call when built (a NumPy / simplejpeg fallback otherwise)",
            ha="center", va="center", fontsize=9, style="italic")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    draw()
    print(f"wrote {OUT}")
