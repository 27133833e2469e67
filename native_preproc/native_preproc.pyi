from typing import Any, Final, Optional, Sequence

__version__: Final[str]
MAX_DIM: Final[int]


def resize_into(
        src: Any,
        dst: Any,
        *,
        mean: float = 127.5,
        std: float = 127.5,
        box: Optional[Sequence[float]] = None,
) -> None:
    """
    Resize an RGB uint8 image into an existing buffer, in place.

    Same resampling as Pillow's ``Image.resize(size, Image.BILINEAR)``
    (antialiased triangle filter, pixel-centre alignment, normalised
    weights, first pass rounded to integers like Pillow's 8-bit
    intermediate image; horizontal pass first unless the height shrinks
    by more than twice as many pixels as the width, as in Pillow >= 13),
    with float32 weights instead of Pillow's fixed point: uint8 results
    match Pillow's except for 1-LSB differences at rare near-ties. The
    GIL is released while pixels are processed.

    Parameters:
        src: uint8 buffer of shape (H, W, 3), RGB, C-contiguous,
             e.g. a numpy.ndarray; H, W >= 1 and <= MAX_DIM
        dst: writable C-contiguous buffer of shape (h, w, 3) and type
             uint8, int8 or float32, e.g. the numpy view of a TFLite
             input tensor (``interpreter.tensor(i)()[0]``);
             written in place, never reallocated; must not share memory
             with src; h, w >= 1 and <= MAX_DIM
             uint8: filtered value rounded half up, clamped to 0..255
             int8: that uint8 value minus 128
             float32: (filtered value - mean) / std, the filtered
             value being the second pass's before its final rounding
        mean: subtracted from the filtered value for float32 dst;
              ignored for uint8/int8 dst; must be finite; default 127.5
        std: divisor for float32 dst; ignored for uint8/int8 dst;
             must be finite and non-zero; default 127.5
        box: the region of src resized into dst, (x0, y0, x1, y1) in
             src pixels, fractions allowed, as Pillow's
             ``resize(size, BILINEAR, box=...)``: 0 <= x0 < x1 <= W,
             0 <= y0 < y1 <= H; windows at its edge still read the
             pixels just outside it (up to the image's edge), as
             Pillow's do. Only the rows and columns the filter reads
             are touched, so a crop is free (no copy). Pillow keeps
             the box in float32: values exact in float32 give the
             same windows. Default None: the whole src

    Raises:
        TypeError: src/dst without the buffer protocol, src not uint8,
                   dst not uint8/int8/float32
        ValueError: not 3-D, not 3 channels, empty, larger than MAX_DIM,
                    not C-contiguous, read-only dst, src and dst
                    sharing memory, bad mean/std, a box not of 4
                    numbers or outside src, or a scale so extreme
                    that the scratch memory would exceed 1 GiB
        MemoryError: scratch allocation failed

    Returns:
        None
    """
