/*
 * libFuzzer target: any bytes -> native_dcsig's walk (the C alone, no Python),
 * with AddressSanitizer and UndefinedBehaviorSanitizer; and a frame the walker
 * accepts must decode in libjpeg without an error or a warning (else abort: a
 * finding), so the gate never answers a frame the plugin's decoder refuses.
 *
 *   bash tests/fuzz/dcsig_fuzz.sh [libFuzzer args]      (builds it, then runs it)
 *
 * The first input byte picks how it is walked: bit 0 on two cores (the helper
 * thread from the middle, for 512 bytes of scan data or more),
 * bit 1 with a stop function (bit 2: what it answers), bits 3-4 the box (whole
 * frame, a centred half, the top-left quarter, a 1-pixel-inset box), bits 5-7
 * the grid (4 + 4 x value). The rest is the JPEG.
 */

#define _GNU_SOURCE 1 /* what Python.h sets for the module: sched_getcpu, CPU_SET */
#define DCSIG_NO_PYTHON 1
/* Small inputs keep it fast: let them take the two-core split too. */
#define SPLIT_MIN_BYTES 512
#include "../../native_preproc/native_dcsig.c"

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
} fz_err_t;

static void
fz_on_error(j_common_ptr c)
{
    longjmp(((fz_err_t *)c->err)->jb, 1);
}

static void
fz_on_message(j_common_ptr c, int level)
{
    /* A warning is corrupt or truncated data: the plugin's decoders refuse it. */
    if (level < 0)
        fz_on_error(c);
}

/* 1 when libjpeg decodes the whole frame (at 1/8 scale: the same entropy
   decoding) without an error or a warning, as the plugin's decoders require. */
static int
libjpeg_accepts(const uint8_t *data, size_t size)
{
    struct jpeg_decompress_struct c;
    fz_err_t e;
    JSAMPLE *volatile row = NULL;
    memset(&c, 0, sizeof c);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = fz_on_error;
    e.pub.emit_message = fz_on_message;
    if (setjmp(e.jb)) {
        free(row);
        jpeg_destroy_decompress(&c);
        return 0;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, data, (unsigned long)size);
    jpeg_read_header(&c, TRUE);
    c.scale_num = 1;
    c.scale_denom = 8;
    c.out_color_space = c.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&c);
    row = (JSAMPLE *)malloc((size_t)c.output_width * c.output_components);
    while (c.output_scanline < c.output_height) {
        JSAMPROW r = row;
        jpeg_read_scanlines(&c, &r, 1);
    }
    jpeg_finish_decompress(&c);
    free(row);
    jpeg_destroy_decompress(&c);
    return 1;
}

static int
fz_stop(void *ctx, const float *out, int rows, int gx)
{
    /* Read what the walker hands over (ASan checks the bounds). */
    volatile float sink = 0.0f;
    for (int i = 0; i < rows * gx * 3; i++)
        sink += out[i];
    (void)sink;
    return *(const int *)ctx;
}

int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t opt = in[0];
    const uint8_t *data = in + 1;
    size -= 1;
    jpeg_t *j = (jpeg_t *)calloc(1, sizeof *j);
    cells_t *c = (cells_t *)calloc(1, sizeof *c);
    float *sig = NULL;
    result_t res = {OK, NULL};
    layout_t L;
    int walked = 0;
    if (parse_headers(data, size, j, &res) == 0 && j->width > 0 && j->height > 0) {
        int w = j->width, h = j->height, x0 = 0, y0 = 0, x1 = w, y1 = h;
        switch ((opt >> 3) & 3) {
        case 1:
            x0 = w / 4, y0 = h / 4, x1 = x0 + (w + 1) / 2, y1 = y0 + (h + 1) / 2;
            break;
        case 2:
            x1 = (w + 1) / 2, y1 = (h + 1) / 2;
            break;
        case 3:
            if (w > 2 && h > 2)
                x0 = 1, y0 = 1, x1 = w - 1, y1 = h - 1;
            break;
        }
        int grid = 4 + 4 * (opt >> 5);
        if (make_layout(j, &L, &res) == 0 && setup_cells(j, &L, c, x0, y0, x1, y1, grid, &res) == 0) {
            size_t n = (size_t)c->gx * c->gy * 3;
            sig = (float *)calloc(n, sizeof(float));
            walk_t wk;
            memset(&wk, 0, sizeof wk);
            int answer = (opt >> 2) & 1;
            wk.out = sig;
            wk.threads = (opt & 1) ? 2 : 1;
            if (opt & 2) {
                wk.stop = fz_stop;
                wk.stop_ctx = &answer;
                wk.stop_rows = 2;
            }
            if (walk(j, &L, c, &wk, &res) == 0) {
                /* Walked to the end: the frame must decode (a stopped walk
                   is a changed frame, and the decoder has its say then). */
                walked = !wk.stopped;
                for (size_t i = 0; i < n && !wk.stopped; i++)
                    if (!isfinite(sig[i]))
                        abort(); /* a cell mean that is not a number */
            }
        }
    }
    free_cells(c);
    free(c);
    for (int i = 0; i < j->nowned; i++)
        free(j->owned[i]);
    free(j);
    free(sig);
    if (walked && !libjpeg_accepts(data, size)) {
        fprintf(stderr, "dcsig_fuzz: walked a frame libjpeg refuses\n");
        abort();
    }
    return 0;
}
