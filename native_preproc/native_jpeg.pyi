from typing import Any, Final, TypedDict

#: JPEG_LIB_VERSION of the libjpeg(-turbo) headers it was built with (62, 80).
LIBJPEG_VERSION: Final[int]
#: Most threads one decoder splits a frame over.
MAX_THREADS: Final[int]


class DecoderStats(TypedDict):
    calls: int
    split_calls: int
    busy_calls: int
    skip_ratio: float
    threads: int
    last_parts_ms: list[tuple[int, int, float, float]]


class JpegDecoder:
    """
    A JPEG decoder that splits one frame's rows over several threads.

    A baseline JPEG's entropy-coded data has no entry points (without
    restart markers), but libjpeg-turbo can skip rows: it walks the
    Huffman codes without the IDCT, colour conversion or stores, at
    about half the cost of decoding them. Part i of N skips the rows of
    the parts before it and decodes its own, and the rows are cut so
    that the parts take the same time, from the skip/decode cost ratio
    measured on the previous frames. Every part decodes with
    simplejpeg's default settings (ISLOW IDCT, fancy upsampling, n/8
    DCT scaling), and the pixels equal a one-piece decode.

    Progressive, multi-scan and arithmetic-coded files and frames under
    640x360 source pixels are decoded in one piece on the caller's
    thread. A second caller arriving while a split decode runs decodes
    in one piece too, rather than wait.

    Parameters:
        threads: parts a frame is split into at most: the caller's
                 thread and threads - 1 helper threads the decoder
                 starts now and keeps until it is freed; 1..MAX_THREADS;
                 default 2
    Raises:
        ValueError: threads out of range
    """

    def __init__(self, threads: int = 2) -> None: ...

    def decode_into(self, data: Any, dst: Any, /) -> None:
        """
        Decode the JPEG in ``data`` into ``dst``, in place, with the GIL
        released.

        Parameters:
            data: the encoded JPEG, any C-contiguous buffer (bytes,
                  memoryview)
            dst: writable C-contiguous uint8 buffer of shape (h, w, 3);
                 (w, h) must be one of the JPEG's DCT scales,
                 (ceil(W * n / 8), ceil(H * n / 8)) for n in 1..8, and
                 the smallest such n is used; RGB is written (grey
                 JPEGs are expanded to RGB)

        Raises:
            ValueError: not a JPEG, corrupt or truncated data (libjpeg's
                        warnings count as errors), or a dst shape that
                        is no DCT scale of the image; the message is
                        libjpeg's
            NotImplementedError: CMYK or YCCK JPEG (no RGB conversion
                                 in libjpeg): use another decoder
            TypeError: data or dst without the buffer protocol

        Returns:
            None
        """

    def stats(self) -> DecoderStats:
        """
        Counters since creation: calls; split_calls (decoded in more
        than one part); busy_calls (decoded in one piece because another
        thread held the helpers); skip_ratio (learnt cost of skipping a
        row relative to decoding it, 0.5 before the first split, with
        the helpers' wake-up counted in, so the parts end together);
        threads (the caller's + helpers that started); last_parts_ms
        ((first row, end row, decoding ms, ms the helper took to start
        after the hand-off, 0 for the caller's part) of each part of the
        last decode).
        """
