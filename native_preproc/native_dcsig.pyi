from typing import Any, Callable, Optional, TypedDict

import numpy as np
import numpy.typing as npt


class DcsigStats(TypedDict):
    calls: int
    split: int
    stopped: int


def cell_means(
    data: Any,
    box: tuple[int, int, int, int],
    grid: int = 16,
    stop: Optional[Callable[[memoryview, int, int], bool]] = None,
    stop_rows: int = 2,
    threads: int = 2,
) -> Optional[npt.NDArray[np.float32]]:
    """
    RGB means of a grid of cells over a region of a JPEG frame, read from
    the DC coefficients of its blocks: the frame's Huffman codes are walked,
    nothing is decoded to pixels. A block belongs to the cell its centre is
    in; a cell's mean is its blocks' DC means (128 + DC x Q0 / 8) per
    component, then JFIF YCbCr -> RGB (grey: R = G = B), in grey levels.

    Baseline Huffman JPEGs only (SOF0/SOF1, 8-bit, one scan, grey or three
    components). Stricter than libjpeg: whatever libjpeg warns about, and a
    few things it lets pass, raise ValueError, so a frame the plugin's
    decoder rejects never gets a signature.

    Parameters:
        data: the encoded JPEG, any C-contiguous buffer (bytes, memoryview)
        box: (x0, y0, x1, y1), the region in the frame's pixels, x1 and y1
             exclusive; inside the frame
        grid: cells per side at most; default 16. Fewer when a cell would
              hold no block of the most subsampled component (the grid is
              then min(grid, box side // that block's footprint)); under 4
              is NotImplementedError
        stop: None, or a function asked once, when the first stop_rows
              cell rows are complete, stop(cells, rows, cols): cells is a
              read-only memoryview of rows * cols * 3 float32 (the means
              so far, row-major, valid during the call only); a true
              answer ends the walk (the frame has changed) and
              cell_means returns None. The same rows are asked about
              whether one core or two walked them; not asked when the
              grid has no more than stop_rows rows. Its exception is
              raised by cell_means; default None
        stop_rows: when to ask stop; default 2
        threads: 2 walks a frame with over 24 KiB of entropy-coded data on
                 two cores (one from the start, one from the middle,
                 joined where their MCUs meet; at a restart marker when
                 the frame has them), 1 on the caller's alone; the same
                 result either way; default 2. One helper thread serves
                 the process; a second caller while it is busy walks on
                 one core

    Raises:
        NotImplementedError: progressive, arithmetic-coded, 12-bit, CMYK,
                             multi-scan JPEG, or a region too small for a
                             4x4 grid
        ValueError: not a JPEG, corrupt or truncated data, or a box outside
                    the frame; the message says which
        TypeError: data without the buffer protocol

    Returns:
        float32 array (rows, cols, 3), or None when stop ended the walk
    """


def stats() -> DcsigStats:
    """
    Counters since import, over all callers: calls (walks that finished
    or stopped), split (walked on two cores), stopped (ended early by
    threshold).
    """
