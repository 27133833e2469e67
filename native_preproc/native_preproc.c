/*
 * native_preproc: resize an RGB uint8 frame straight into a model input
 * tensor (uint8, int8 or float32), writing it in place.
 *
 * The resampling reproduces Pillow's Image.resize(..., BILINEAR): separable
 * convolution with the triangle filter whose support is widened by the
 * downscale factor (antialiasing), pixel-centre alignment and normalised
 * weights; the first pass is rounded to integers as Pillow's 8-bit
 * intermediate image is, and the pass order is Pillow 13's (horizontal
 * first unless the height shrinks much more than the width).  Pillow's
 * fixed-point weights are float32 here, so uint8 results differ from
 * Pillow's by one LSB at rare near-ties; float32 outputs are the second
 * pass's value before the final rounding.
 *
 * Only the Python C API and the buffer protocol are used (no NumPy headers)
 * so the module builds anywhere Python.h exists, cross builds included.
 * The kernels are plain C99 shaped so that gcc -O3 auto-vectorises them for
 * SSE2 and NEON alike; there are no intrinsics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#define NATIVE_PREPROC_VERSION "0.2.0"

/* Bigger frames are refused: for a camera pipeline they are a caller bug,
 * and the bound keeps every size product far from overflowing. */
#define MAX_DIM 65536
/* Only absurd scale/aspect combinations (e.g. 60000x60000 -> 1x60000) need
 * more scratch than this; refuse them instead of thrashing the machine. */
#define MAX_SCRATCH_BYTES ((uint64_t)1 << 30)

enum out_kind { OUT_U8, OUT_I8, OUT_F32 };

/* The kernels below also get an AVX2 clone on x86-64, picked once at load
 * time (GCC function multi-versioning through an ifunc): a 480x270 ->
 * 224x224 resize takes 0.14 ms instead of 0.20 with SSE2 alone, with the
 * same results bit for bit.  Not "fma": fused multiply-adds round
 * differently.  Needs glibc's ifunc; elsewhere the plain build stands. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__GLIBC__) && !defined(NATIVE_PREPROC_NO_CLONES)
#define KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#endif

/* ------------------------------------------------------------------------ */
/* Filter coefficients                                                       */
/* ------------------------------------------------------------------------ */

static double
triangle(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Coefficient slots per output sample, sized as Pillow sizes them. */
static uint64_t
coeff_slots(double in_span, int out_size)
{
    double scale = in_span / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    return (uint64_t)ceil(filterscale) * 2 + 1;
}

/*
 * For every output sample: first input index, tap count and normalised
 * weights (`slots` floats per sample).  The window arithmetic follows
 * Pillow's precompute_coeffs in double so that the truncating casts select
 * exactly the same input pixels.  The output spans the source interval
 * [in0, in1) (Pillow's resize box): a crop is only an offset and another
 * scale here, and windows near the crop's edge still reach past it, up to
 * the image's edge, exactly as Pillow's do.
 *
 * With `fixed` set, every sample gets the same tap count K (the largest),
 * the window being slid left where it would run off the end and padded with
 * zero weights: a constant trip count keeps the horizontal kernel's inner
 * loop free of branch mispredictions, which otherwise cost more than the
 * few extra zero taps.  Returns K.
 */
static int
compute_coeffs(int in_size, double in0, double in1, int out_size, int slots,
               int fixed, int *bounds, float *k)
{
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* the triangle's support is 1 */
    double ss = 1.0 / filterscale;
    int max_taps = 0;
    int xx, x;

    for (xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        /* (int) truncates toward zero like Pillow; the clamp below then
         * takes care of windows starting left of the image. */
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        int n;

        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        n = xmax - xmin;
        if (n < 0)
            n = 0;
        if (n > slots)
            n = slots;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = n;
        if (n > max_taps)
            max_taps = n;
    }

    for (xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = bounds[2 * xx];
        int n = bounds[2 * xx + 1];
        int start = xmin;
        float *kp = k + (size_t)xx * slots;

        if (fixed && start > in_size - max_taps)
            start = in_size - max_taps;
        for (x = 0; x < slots; x++)
            kp[x] = 0.0f;
        /* Weights are evaluated twice rather than buffered so that a
         * window of any width needs no extra memory. */
        for (x = 0; x < n; x++)
            ww += triangle((x + xmin - center + 0.5) * ss);
        for (x = 0; x < n; x++) {
            double v = triangle((x + xmin - center + 0.5) * ss);
            kp[xmin - start + x] = (float)(ww != 0.0 ? v / ww : v);
        }
        bounds[2 * xx] = start;
        bounds[2 * xx + 1] = fixed ? max_taps : n;
    }
    return max_taps;
}

/* ------------------------------------------------------------------------ */
/* Pixel kernels (run without the GIL)                                       */
/* ------------------------------------------------------------------------ */

/*
 * The horizontal pass works on blocks of four source rows interleaved so
 * that one pixel of the block is 12 consecutive floats (channel-major,
 * row-minor): every tap is then three full-width vector multiply-adds with
 * one shared weight, on SSE2 and NEON alike.  Filtering one RGB row on its
 * own would leave a vector lane idle and force unaligned overlapping loads.
 */

/* b[4*i + r] = row_r[i]: bytes first, widening them afterwards is cheaper
 * than interleaving floats. */
KERNEL static void
interleave4(const uint8_t *restrict r0, const uint8_t *restrict r1,
            const uint8_t *restrict r2, const uint8_t *restrict r3,
            uint8_t *restrict b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        b[4 * i + 0] = r0[i];
        b[4 * i + 1] = r1[i];
        b[4 * i + 2] = r2[i];
        b[4 * i + 3] = r3[i];
    }
}

KERNEL static void
widen(const uint8_t *restrict b, float *restrict f, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        f[i] = (float)b[i];
}

/* t[12*x + e] = sum_k weight * blk[12*(start + k) + e] */
KERNEL static void
hfilter4(const float *restrict blk, const int *restrict xb,
         const float *restrict xk, int xslots, int taps, int w,
         float *restrict t)
{
    int x, k, e;

    for (x = 0; x < w; x++) {
        const float *restrict kp = xk + (size_t)x * xslots;
        const float *restrict p = blk + 12 * (size_t)xb[2 * x];
        float a[12] = {0.0f};

        for (k = 0; k < taps; k++) {
            float kk = kp[k];
            for (e = 0; e < 12; e++)
                a[e] += kk * p[e];
            p += 12;
        }
        for (e = 0; e < 12; e++)
            t[12 * (size_t)x + e] = a[e];
    }
}

/* Like Pillow, whose horizontal pass writes an 8-bit image, the filtered
 * values are rounded half up (they are >= 0, so truncating v + 0.5 does it)
 * before the vertical pass: uint8 results then match Pillow's except for
 * rare near-ties.  No clamp to 255: only float error over windows
 * thousands of pixels wide could reach 256, which the final store clamps
 * anyway, and the clamp would cost several percent of the whole resize. */
static float
round_u8(float v)
{
    return (float)(int32_t)(v + 0.5f);
}

KERNEL static void
deinterleave4(const float *restrict t, float *restrict o0,
              float *restrict o1, float *restrict o2, float *restrict o3,
              size_t n, int round)
{
    size_t i;
    if (round) {
        for (i = 0; i < n; i++) {
            o0[i] = round_u8(t[4 * i + 0]);
            o1[i] = round_u8(t[4 * i + 1]);
            o2[i] = round_u8(t[4 * i + 2]);
            o3[i] = round_u8(t[4 * i + 3]);
        }
    }
    else {
        for (i = 0; i < n; i++) {
            o0[i] = t[4 * i + 0];
            o1[i] = t[4 * i + 1];
            o2[i] = t[4 * i + 2];
            o3[i] = t[4 * i + 3];
        }
    }
}

/* Vertical pass: acc[i] = sum_k weight_k * rows[k][i] over one output row.
 * Up to four taps per sweep cut the loads and stores of `acc`. */
KERNEL static void
vfilter(float *restrict acc, const float *const *rows, const float *kp,
        int n, int len)
{
    int i, k = 0;

    memset(acc, 0, (size_t)len * sizeof(float));
    for (; k + 4 <= n; k += 4) {
        const float *restrict r0 = rows[k];
        const float *restrict r1 = rows[k + 1];
        const float *restrict r2 = rows[k + 2];
        const float *restrict r3 = rows[k + 3];
        float k0 = kp[k], k1 = kp[k + 1], k2 = kp[k + 2], k3 = kp[k + 3];
        for (i = 0; i < len; i++)
            acc[i] += (k0 * r0[i] + k1 * r1[i]) + (k2 * r2[i] + k3 * r3[i]);
    }
    if (n - k == 3) {
        const float *restrict r0 = rows[k];
        const float *restrict r1 = rows[k + 1];
        const float *restrict r2 = rows[k + 2];
        float k0 = kp[k], k1 = kp[k + 1], k2 = kp[k + 2];
        for (i = 0; i < len; i++)
            acc[i] += (k0 * r0[i] + k1 * r1[i]) + k2 * r2[i];
    }
    else if (n - k == 2) {
        const float *restrict r0 = rows[k];
        const float *restrict r1 = rows[k + 1];
        float k0 = kp[k], k1 = kp[k + 1];
        for (i = 0; i < len; i++)
            acc[i] += k0 * r0[i] + k1 * r1[i];
    }
    else if (n - k == 1) {
        const float *restrict r0 = rows[k];
        float k0 = kp[k];
        for (i = 0; i < len; i++)
            acc[i] += k0 * r0[i];
    }
}

/* Vertical pass straight from uint8 source rows (vertical-first order):
 * acc[i] = sum_k weight_k * src[(first + k) * stride + i]. */
KERNEL static void
vfilter_u8(float *restrict acc, const uint8_t *src, size_t stride, int first,
           const float *kp, int n, size_t len)
{
    size_t i;
    int k;

    memset(acc, 0, len * sizeof(float));
    for (k = 0; k < n; k++) {
        const uint8_t *restrict r = src + (size_t)(first + k) * stride;
        float kk = kp[k];
        for (i = 0; i < len; i++)
            acc[i] += kk * (float)r[i];
    }
}

KERNEL static void
store_u8(uint8_t *restrict d, const float *restrict acc, int len)
{
    int i;
    for (i = 0; i < len; i++) {
        /* Weights and pixels are non-negative, so acc >= 0 exactly and
         * truncating acc + 0.5 rounds half up; weights sum to one, so acc
         * exceeds 255 only by float rounding (hence the clamp) and the
         * cast cannot overflow.  Clamping the integer keeps the loop
         * branch-free for the vectoriser. */
        int32_t v = (int32_t)(acc[i] + 0.5f);
        v = v > 255 ? 255 : v;
        d[i] = (uint8_t)v;
    }
}

KERNEL static void
store_i8(int8_t *restrict d, const float *restrict acc, int len)
{
    int i;
    for (i = 0; i < len; i++) {
        int32_t v = (int32_t)(acc[i] + 0.5f);
        v = v > 255 ? 255 : v;
        d[i] = (int8_t)(v - 128);
    }
}

KERNEL static void
store_f32(float *restrict d, const float *restrict acc, int len, float mean,
          float std)
{
    int i;
    for (i = 0; i < len; i++)
        d[i] = (acc[i] - mean) / std;
}

typedef struct {
    const uint8_t *src;
    void *dst;
    int H, W, h, w;
    double bx0, by0, bx1, by1; /* source region (Pillow's box), see resize_into */
    int x0, Wc;     /* source columns any window reads: [x0, x0 + Wc) */
    int round_h;    /* round the horizontal pass (the vertical one is not an identity) */
    enum out_kind kind;
    float mean, std;
    int xslots, yslots;
    int ring_rows;     /* horizontally filtered rows kept at once */
    size_t row_stride; /* floats per ring row */
    /* scratch */
    int *xb, *yb;
    float *xk, *yk;
    uint8_t *blk8;  /* 4 interleaved source rows, 12*W bytes */
    float *blkf;    /* the same widened to float */
    float *tmp;     /* filtered block, 12*w floats */
    float *ring;    /* ring_rows rows of row_stride floats */
    float *junk;    /* 3 rows absorbing the lanes of a short last block */
    float *acc;     /* one output row before conversion */
    const float **rowp;
    int vfirst;     /* pass order, see vertical_first() */
    /* vertical-first order only */
    uint8_t *vrows; /* 4 vertically filtered rows, 3*W bytes each */
} job_t;

/* Store one output row of unrounded filtered values. */
static void
store_row(job_t *j, int y, const float *acc)
{
    size_t w3 = 3 * (size_t)j->w;
    switch (j->kind) {
    case OUT_U8:
        store_u8((uint8_t *)j->dst + (size_t)y * w3, acc, (int)w3);
        break;
    case OUT_I8:
        store_i8((int8_t *)j->dst + (size_t)y * w3, acc, (int)w3);
        break;
    case OUT_F32:
        store_f32((float *)j->dst + (size_t)y * w3, acc, (int)w3, j->mean,
                  j->std);
        break;
    }
}

/* Horizontal pass of four rows of 3*W bytes into four rows of 3*w floats. */
static void
hfilter_rows(job_t *j, const uint8_t *const in[4], float *const out[4],
             int taps, int round)
{
    size_t n = 3 * (size_t)j->Wc;

    interleave4(in[0], in[1], in[2], in[3], j->blk8, n);
    widen(j->blk8, j->blkf, 4 * n);
    hfilter4(j->blkf, j->xb, j->xk, j->xslots, taps, j->w, j->tmp);
    deinterleave4(j->tmp, out[0], out[1], out[2], out[3], 3 * (size_t)j->w,
                  round);
}

/* Horizontally filter source rows [first, first + 4) into the ring. */
static void
hblock(job_t *j, int first, int taps)
{
    const uint8_t *in[4];
    float *out[4];
    size_t src_stride = 3 * (size_t)j->W;
    int r;

    /* Only the columns some window reads are filtered: a crop's margins
     * cost nothing. */
    const uint8_t *base = j->src + 3 * (size_t)j->x0;

    in[0] = base + (size_t)first * src_stride; /* first < H always */
    for (r = 0; r < 4; r++) {
        int row = first + r;
        if (row < j->H) {
            in[r] = base + (size_t)row * src_stride;
            out[r] = j->ring + (size_t)(row % j->ring_rows) * j->row_stride;
        }
        else {
            /* Past the bottom: filter row `first` again, throw it away. */
            in[r] = in[0];
            out[r] = j->junk + (size_t)(r - 1) * j->row_stride;
        }
    }
    /* With the height unchanged (and no vertical crop) the vertical pass is
     * exact and this is the only rounding pass: Pillow rounds once, so must
     * this. */
    hfilter_rows(j, in, out, taps, j->round_h);
}

/* Horizontal pass first (Pillow's order unless the height shrinks much
 * more than the width). */
static void
run_hfirst(job_t *j, int taps)
{
    int y, k, next = 0;

    for (y = 0; y < j->h; y++) {
        int y0 = j->yb[2 * y];
        int n = j->yb[2 * y + 1];

        /* Windows only move forward, so each source row is filtered
         * horizontally once, in blocks of four, and parked in a ring that
         * holds the widest window plus a block's overhang; rows no window
         * needs are skipped. */
        if (next < y0)
            next = y0;
        for (; next < y0 + n; next += 4)
            hblock(j, next, taps);
        for (k = 0; k < n; k++)
            j->rowp[k] = j->ring + (size_t)((y0 + k) % j->ring_rows) * j->row_stride;

        vfilter(j->acc, j->rowp, j->yk + (size_t)y * j->yslots, n, 3 * j->w);
        store_row(j, y, j->acc);
    }
}

/* Vertical pass first: four output rows at a time are filtered vertically
 * into 8-bit rows (Pillow's intermediate image), then horizontally. */
static void
run_vfirst(job_t *j, int taps)
{
    size_t stride = 3 * (size_t)j->W;
    size_t n3 = 3 * (size_t)j->Wc; /* the columns some window reads */
    const uint8_t *base = j->src + 3 * (size_t)j->x0;
    int y, r;

    for (y = 0; y < j->h; y += 4) {
        const uint8_t *in[4];
        float *out[4];

        for (r = 0; r < 4; r++) {
            uint8_t *row = j->vrows + (size_t)r * n3;
            out[r] = j->ring + (size_t)r * j->row_stride;
            if (y + r < j->h) {
                vfilter_u8(j->acc, base, stride, j->yb[2 * (y + r)],
                           j->yk + (size_t)(y + r) * j->yslots,
                           j->yb[2 * (y + r) + 1], n3);
                /* Round half up and clamp, as Pillow's 8-bit pass does. */
                store_u8(row, j->acc, (int)n3);
                in[r] = row;
            }
            else {
                in[r] = in[0]; /* past the bottom: filtered, not stored */
            }
        }
        hfilter_rows(j, in, out, taps, 0);
        for (r = 0; r < 4 && y + r < j->h; r++)
            store_row(j, y + r, out[r]);
    }
}

/* Pillow >= 13 runs the vertical pass first when the height shrinks by
 * more than twice as many pixels as the width; the order decides where the
 * intermediate 8-bit rounding happens, so it is followed to match.  With
 * the width unchanged there is only the vertical pass, which the
 * horizontal-first code does as well (its horizontal pass is then exact).
 * With a box Pillow still compares the whole image's sizes, not the box's
 * (checked against Pillow 13: a tall frame's centre square goes vertical
 * first). */
static int
vertical_first(int H, int W, int h, int w)
{
    return W != w && H - h > 0 && (int64_t)(H - h) > 2 * (int64_t)(W - w);
}

static void
run_job(job_t *j)
{
    int taps = compute_coeffs(j->W, j->bx0, j->bx1, j->w, j->xslots, 1,
                              j->xb, j->xk);
    int x;

    /* Windows move only right: the first starts leftmost, the last ends
     * rightmost.  Rebase them on the first column any of them reads. */
    j->x0 = j->xb[0];
    j->Wc = j->xb[2 * (j->w - 1)] + taps - j->x0;
    for (x = 0; x < j->w; x++)
        j->xb[2 * x] -= j->x0;
    compute_coeffs(j->H, j->by0, j->by1, j->h, j->yslots, 0, j->yb, j->yk);
    if (j->vfirst)
        run_vfirst(j, taps);
    else
        run_hfirst(j, taps);
}

/* ------------------------------------------------------------------------ */
/* Argument checking                                                         */
/* ------------------------------------------------------------------------ */

/* Returns the struct-module type code of a single-item format, or 0. */
static char
format_code(const char *fmt)
{
    if (fmt == NULL)
        return 'B'; /* the buffer protocol's default: unsigned bytes */
    if (fmt[0] == '@' || fmt[0] == '=')
        fmt++;
#if PY_LITTLE_ENDIAN
    else if (fmt[0] == '<')
        fmt++;
#else
    else if (fmt[0] == '>' || fmt[0] == '!')
        fmt++;
#endif
    else if (fmt[0] == '<' || fmt[0] == '>' || fmt[0] == '!') {
        /* Foreign byte order only matters for multi-byte items. */
        if ((fmt[1] == 'B' || fmt[1] == 'b') && fmt[2] == '\0')
            return fmt[1];
        return 0;
    }
    if (fmt[0] == '\0' || fmt[1] != '\0')
        return 0;
    return fmt[0];
}

static const char *
dtype_name(const Py_buffer *v)
{
    switch (format_code(v->format)) {
    case 'B': return "uint8";
    case 'b': return "int8";
    case 'f': return "float32";
    case 'd': return "float64";
    case 'e': return "float16";
    case 'h': return "int16";
    case 'H': return "uint16";
    case 'i': return "int32";
    case 'I': return "uint32";
    case 'l': case 'q': return "int64";
    case 'L': case 'Q': return "uint64";
    case '?': return "bool";
    default: return v->format ? v->format : "?";
    }
}

static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name)
{
    Py_buffer probe;
    int ro;

    if (!PyObject_CheckBuffer(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must support the buffer protocol (e.g. a "
                     "numpy.ndarray), got %.200s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view,
                           PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0)) == 0)
        return 0;
    if (!writable)
        return -1;
    /* Exporters word read-only refusals differently (NumPy raises
     * ValueError, bytes BufferError): probe so the caller gets one clear
     * message. */
    if (PyObject_GetBuffer(obj, &probe, PyBUF_RECORDS_RO) != 0)
        return -1;
    ro = probe.readonly;
    PyBuffer_Release(&probe);
    if (ro) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError,
                     "%s must be writable, got a read-only buffer", name);
    }
    return -1;
}

/* Checks layout of an (rows, cols, 3) image buffer. */
static int
check_image(const Py_buffer *v, const char *name, int *rows, int *cols)
{
    if (v->ndim != 3) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a 3-D (height, width, 3) array, got %d-D",
                     name, v->ndim);
        return -1;
    }
    if (v->shape[2] != 3) {
        PyErr_Format(PyExc_ValueError,
                     "%s must have 3 channels (RGB), got shape (%zd, %zd, %zd)",
                     name, v->shape[0], v->shape[1], v->shape[2]);
        return -1;
    }
    if (v->shape[0] < 1 || v->shape[1] < 1) {
        PyErr_Format(PyExc_ValueError,
                     "%s must not be empty, got shape (%zd, %zd, 3)", name,
                     v->shape[0], v->shape[1]);
        return -1;
    }
    if (v->shape[0] > MAX_DIM || v->shape[1] > MAX_DIM) {
        PyErr_Format(PyExc_ValueError,
                     "%s is too large: shape (%zd, %zd, 3), each side must "
                     "be at most %d",
                     name, v->shape[0], v->shape[1], MAX_DIM);
        return -1;
    }
    if (!PyBuffer_IsContiguous(v, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous", name);
        return -1;
    }
    *rows = (int)v->shape[0];
    *cols = (int)v->shape[1];
    return 0;
}

/* box: None (the whole source) or four real numbers (x0, y0, x1, y1), the
 * source region that is resized into dst, in source pixel coordinates
 * (Pillow's resize box; fractions allowed).  Needs j->H and j->W. */
static int
parse_box(PyObject *box, job_t *j)
{
    double v[4];
    PyObject *seq;
    int i;

    if (box == NULL || box == Py_None) {
        j->bx0 = j->by0 = 0.0;
        j->bx1 = j->W;
        j->by1 = j->H;
        return 0;
    }
    seq = PySequence_Fast(box, "box must be None or a sequence of 4 numbers (x0, y0, x1, y1)");
    if (seq == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 4) {
        PyErr_Format(PyExc_ValueError,
                     "box must have 4 numbers (x0, y0, x1, y1), got %zd",
                     PySequence_Fast_GET_SIZE(seq));
        Py_DECREF(seq);
        return -1;
    }
    for (i = 0; i < 4; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(item) || PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "box must hold real numbers, not %.200s",
                         Py_TYPE(item)->tp_name);
            Py_DECREF(seq);
            return -1;
        }
        v[i] = PyFloat_AsDouble(item);
        if (v[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    /* The negated comparisons also refuse NaN. */
    if (!(isfinite(v[0]) && isfinite(v[1]) && isfinite(v[2]) && isfinite(v[3]) &&
          v[0] >= 0.0 && v[1] >= 0.0 && v[0] < v[2] && v[1] < v[3] &&
          v[2] <= j->W && v[3] <= j->H)) {
        PyObject *got = Py_BuildValue("(dddd)", v[0], v[1], v[2], v[3]);
        if (got != NULL)
            PyErr_Format(PyExc_ValueError,
                         "box must satisfy 0 <= x0 < x1 <= %d and "
                         "0 <= y0 < y1 <= %d (the source's width and height), "
                         "got %R", j->W, j->H, got);
        Py_XDECREF(got);
        return -1;
    }
    j->bx0 = v[0];
    j->by0 = v[1];
    j->bx1 = v[2];
    j->by1 = v[3];
    return 0;
}

/* Scratch buffers of one call. */
enum {
    S_XK, S_YK, S_XB, S_YB, S_BLK8, S_BLKF, S_TMP, S_RING, S_JUNK, S_ACC,
    S_ROWP, S_VROWS, S_COUNT
};

static uint64_t
round_up(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

/* ------------------------------------------------------------------------ */
/* resize_into                                                               */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(resize_into_doc,
"resize_into($module, /, src, dst, *, mean=127.5, std=127.5, box=None)\n"
"--\n"
"\n"
"Resize an RGB uint8 image into dst, in place.\n"
"\n"
"Same algorithm as Pillow's Image.resize(size, Image.BILINEAR)\n"
"(antialiased triangle filter, 8-bit rounding between the passes,\n"
"Pillow 13's pass order), with float32 instead of fixed-point weights.\n"
"\n"
"src: C-contiguous uint8 buffer of shape (H, W, 3).\n"
"dst: writable C-contiguous buffer of shape (h, w, 3) and type uint8,\n"
"     int8 or float32; it is written, never reallocated.\n"
"     uint8: filtered value rounded and clamped to 0..255;\n"
"     int8: that uint8 value minus 128;\n"
"     float32: (filtered value - mean) / std, unrounded.\n"
"mean, std: only used for float32 dst; std must be non-zero.\n"
"box: None (the whole src) or (x0, y0, x1, y1), the region of src\n"
"     resized into dst, in src pixels (fractions allowed), as Pillow's\n"
"     resize box: 0 <= x0 < x1 <= W, 0 <= y0 < y1 <= H.  Only the\n"
"     pixels the filter reads are touched: a crop costs nothing.\n"
"\n"
"The GIL is released while pixels are processed.");

static PyObject *
resize_into(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"src", "dst", "mean", "std", "box", NULL};
    PyObject *src_obj, *dst_obj, *box_obj = Py_None;
    double mean = 127.5, std = 127.5;
    Py_buffer src, dst;
    int have_src = 0, have_dst = 0;
    char code;
    job_t j;
    uint64_t ring_rows, total = 0;
    uint64_t size[S_COUNT];
    void *scratch[S_COUNT] = {NULL};
    int i;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$ddO:resize_into", kwlist,
                                     &src_obj, &dst_obj, &mean, &std, &box_obj))
        return NULL;
    if (!isfinite(mean) || !isfinite(std) || std == 0.0) {
        PyObject *m = PyFloat_FromDouble(mean);
        PyObject *s = PyFloat_FromDouble(std);
        if (m != NULL && s != NULL)
            PyErr_Format(PyExc_ValueError,
                         "mean and std must be finite and std non-zero, "
                         "got mean=%R, std=%R", m, s);
        Py_XDECREF(m);
        Py_XDECREF(s);
        return NULL;
    }

    memset(&j, 0, sizeof(j));

    if (get_buffer(src_obj, &src, 0, "src") < 0)
        goto done;
    have_src = 1;
    code = format_code(src.format);
    if (code != 'B' || src.itemsize != 1) {
        PyErr_Format(PyExc_TypeError, "src must be uint8, got %s",
                     dtype_name(&src));
        goto done;
    }
    if (check_image(&src, "src", &j.H, &j.W) < 0)
        goto done;

    if (get_buffer(dst_obj, &dst, 1, "dst") < 0)
        goto done;
    have_dst = 1;
    code = format_code(dst.format);
    if (code == 'B' && dst.itemsize == 1)
        j.kind = OUT_U8;
    else if (code == 'b' && dst.itemsize == 1)
        j.kind = OUT_I8;
    else if (code == 'f' && dst.itemsize == 4)
        j.kind = OUT_F32;
    else {
        PyErr_Format(PyExc_TypeError,
                     "dst must be uint8, int8 or float32, got %s",
                     dtype_name(&dst));
        goto done;
    }
    if (check_image(&dst, "dst", &j.h, &j.w) < 0)
        goto done;

    {
        /* Overlap would let output rows clobber source rows not yet read. */
        uintptr_t s0 = (uintptr_t)src.buf, s1 = s0 + (uintptr_t)src.len;
        uintptr_t d0 = (uintptr_t)dst.buf, d1 = d0 + (uintptr_t)dst.len;
        if (s0 < d1 && d0 < s1) {
            PyErr_SetString(PyExc_ValueError,
                            "src and dst must not share memory");
            goto done;
        }
    }

    /* Scratch sizing, in 64-bit so that even 32-bit hosts cannot wrap. */
    if (parse_box(box_obj, &j) < 0)
        goto done;
    j.xslots = (int)coeff_slots(j.bx1 - j.bx0, j.w);
    j.yslots = (int)coeff_slots(j.by1 - j.by0, j.h);
    j.vfirst = vertical_first(j.H, j.W, j.h, j.w);
    /* Pillow's need_vertical: the vertical pass is an identity only for
     * the full height at the same size. */
    j.round_h = j.h != j.H || j.by0 != 0.0 || j.by1 != (double)j.H;
    if (j.vfirst) {
        ring_rows = 4; /* the output rows of one block */
    }
    else {
        ring_rows = (uint64_t)j.yslots + 3; /* widest window + overhang */
        if (ring_rows > (uint64_t)j.H)
            ring_rows = (uint64_t)j.H;
    }
    j.ring_rows = (int)ring_rows;
    /* Whole cache lines per ring row. */
    j.row_stride = (size_t)round_up(3 * (uint64_t)j.w, 16);
    size[S_XK] = (uint64_t)j.w * (uint64_t)j.xslots * sizeof(float);
    size[S_YK] = (uint64_t)j.h * (uint64_t)j.yslots * sizeof(float);
    size[S_XB] = 2 * (uint64_t)j.w * sizeof(int);
    size[S_YB] = 2 * (uint64_t)j.h * sizeof(int);
    size[S_BLK8] = 12 * (uint64_t)j.W;
    size[S_BLKF] = 12 * (uint64_t)j.W * sizeof(float);
    size[S_TMP] = 12 * (uint64_t)j.w * sizeof(float);
    size[S_RING] = ring_rows * (uint64_t)j.row_stride * sizeof(float);
    size[S_JUNK] = j.vfirst ? 0 : 3 * (uint64_t)j.row_stride * sizeof(float);
    size[S_ACC] = (j.vfirst ? 3 * (uint64_t)j.W : (uint64_t)j.row_stride) * sizeof(float);
    size[S_ROWP] = j.vfirst ? 0 : ring_rows * sizeof(float *);
    size[S_VROWS] = j.vfirst ? 4 * 3 * (uint64_t)j.W : 0;
    for (i = 0; i < S_COUNT; i++)
        total += size[i];
    if (total > MAX_SCRATCH_BYTES) {
        PyErr_Format(PyExc_ValueError,
                     "resizing (%d, %d) to (%d, %d) would need %llu MiB of "
                     "scratch memory (limit %llu MiB)",
                     j.H, j.W, j.h, j.w,
                     (unsigned long long)(total >> 20),
                     (unsigned long long)(MAX_SCRATCH_BYTES >> 20));
        goto done;
    }
    /* Separate blocks rather than one carved up, so that ASan keeps
     * redzones between them; a dozen mallocs cost nothing next to the
     * pixel work. */
    for (i = 0; i < S_COUNT; i++) {
        scratch[i] = PyMem_RawMalloc((size_t)size[i]);
        if (scratch[i] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    j.xk = scratch[S_XK];
    j.yk = scratch[S_YK];
    j.xb = scratch[S_XB];
    j.yb = scratch[S_YB];
    j.blk8 = scratch[S_BLK8];
    j.blkf = scratch[S_BLKF];
    j.tmp = scratch[S_TMP];
    j.ring = scratch[S_RING];
    j.junk = scratch[S_JUNK];
    j.acc = scratch[S_ACC];
    j.rowp = scratch[S_ROWP];
    j.vrows = scratch[S_VROWS];

    j.src = (const uint8_t *)src.buf;
    j.dst = dst.buf;
    j.mean = (float)mean;
    j.std = (float)std;

    Py_BEGIN_ALLOW_THREADS
    run_job(&j);
    Py_END_ALLOW_THREADS

    result = Py_None;
    Py_INCREF(result);

done:
    for (i = 0; i < S_COUNT; i++)
        PyMem_RawFree(scratch[i]);
    if (have_dst)
        PyBuffer_Release(&dst);
    if (have_src)
        PyBuffer_Release(&src);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Module                                                                    */
/* ------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"resize_into", (PyCFunction)(void (*)(void))resize_into,
     METH_VARARGS | METH_KEYWORDS, resize_into_doc},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *m)
{
    if (PyModule_AddStringConstant(m, "__version__", NATIVE_PREPROC_VERSION) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "MAX_DIM", MAX_DIM) < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    /* No global state: safe on free-threaded builds. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"Resize RGB uint8 frames into model input tensors (Pillow BILINEAR\n"
"semantics, float32 arithmetic, GIL released).");

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "native_preproc",
    module_doc,
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit_native_preproc(void)
{
    return PyModuleDef_Init(&moduledef);
}
