/*
 * native_jpeg: decode one JPEG frame on several cores.
 *
 * eKuiper sends labelImage calls one at a time, so while one core decodes a
 * frame the others idle, and the decode is a third of the call.  A baseline
 * JPEG without restart markers cannot be cut into independent pieces, but
 * libjpeg-turbo's jpeg_skip_scanlines() walks the entropy-coded data without
 * the IDCT, colour conversion and stores, at about half the cost of a full
 * decode (more for high-ratio scaled decodes, where the entropy decoding is
 * most of the work).  So part i of N skips the rows of the parts before it and
 * decodes its own; the rows are cut so that every part takes the same time,
 * with the skip/decode cost ratio learnt from the previous frames' timings.
 * Every part decodes with the same settings as simplejpeg's defaults
 * (ISLOW IDCT, fancy upsampling, n/8 DCT scaling), so the rows are bit-exact
 * against a one-piece decode (tests/test_native_jpeg.py).
 *
 * Progressive, multi-scan and arithmetic-coded files, CMYK/YCCK and small
 * frames are decoded in one piece (a skip would redo all of the entropy
 * decoding there); CMYK/YCCK raise NotImplementedError so the caller can use
 * another decoder.  Warnings (corrupt data, premature end) are errors, as with
 * simplejpeg's strict=True.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#define MAX_PARTS 8
/* A part below this many output rows, or a frame below this many source
   pixels, is not worth waking a thread for (the hand-off costs ~20-50 us). */
#define MIN_PART_ROWS 24
#define MIN_SPLIT_PIXELS (640 * 360)

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} err_mgr;

static void
on_error(j_common_ptr c)
{
    err_mgr *e = (err_mgr *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void
on_message(j_common_ptr c, int level)
{
    /* level -1 is a warning: corrupt or truncated data.  A partial picture
       gives a wrong label, so it is an error here (simplejpeg's strict). */
    if (level < 0)
        on_error(c);
}

enum { PART_OK = 0, PART_FAILED = 1, PART_UNSUPPORTED = 2 };

typedef struct {
    /* in */
    const unsigned char *data;
    size_t len;
    unsigned char *dst;
    int out_w, out_h, scale_num;
    int r0, r1; /* output rows [r0, r1): skip r0, decode the rest */
    int last;   /* read to the end of the data (trailing corruption) */
    /* out */
    int status;
    double seconds;    /* decoding (part_run) */
    double dispatched; /* when the caller handed the part to a helper */
    double waited;     /* from then to the helper's start: its wake-up */
    double finished;   /* from then to the part's end */
    err_mgr err;
    /* the decompressor, opened (header read) by part_open */
    struct jpeg_decompress_struct c;
    int opened;
} part_t;

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Create the decompressor and read the header.  Returns 0 or -1 (status set). */
static int
part_open(part_t *p)
{
    memset(&p->c, 0, sizeof(p->c));
    p->opened = 0;
    p->status = PART_FAILED;
    p->err.msg[0] = '\0';
    p->c.err = jpeg_std_error(&p->err.pub);
    p->err.pub.error_exit = on_error;
    p->err.pub.emit_message = on_message;
    if (setjmp(p->err.jb)) {
        jpeg_destroy_decompress(&p->c);
        return -1;
    }
    jpeg_create_decompress(&p->c);
    p->opened = 1;
    jpeg_mem_src(&p->c, (unsigned char *)p->data, (unsigned long)p->len);
    jpeg_read_header(&p->c, TRUE);
    if (p->c.jpeg_color_space == JCS_CMYK || p->c.jpeg_color_space == JCS_YCCK) {
        snprintf(p->err.msg, sizeof(p->err.msg), "CMYK/YCCK JPEG: no RGB conversion in libjpeg");
        p->status = PART_UNSUPPORTED;
        jpeg_destroy_decompress(&p->c);
        p->opened = 0;
        return -1;
    }
    return 0;
}

/* Decode rows [r0, r1) of an opened part into dst; always destroys it. */
static void
part_run(part_t *p)
{
    JSAMPROW rows[16];
    double t0 = now_s();
    if (setjmp(p->err.jb)) {
        p->status = PART_FAILED;
        goto out;
    }
    p->c.scale_num = (unsigned int)p->scale_num;
    p->c.scale_denom = 8;
    p->c.out_color_space = JCS_RGB;
    p->c.dct_method = JDCT_ISLOW;
    p->c.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&p->c);
    if ((int)p->c.output_width != p->out_w || (int)p->c.output_height != p->out_h ||
        p->c.output_components != 3) {
        snprintf(p->err.msg, sizeof(p->err.msg), "decodes to %ux%u, not the %dx%d of dst",
                 p->c.output_width, p->c.output_height, p->out_w, p->out_h);
        p->status = PART_FAILED;
        goto out;
    }
    if (p->r0 > 0 && jpeg_skip_scanlines(&p->c, (JDIMENSION)p->r0) != (JDIMENSION)p->r0) {
        snprintf(p->err.msg, sizeof(p->err.msg), "could not skip to row %d", p->r0);
        p->status = PART_FAILED;
        goto out;
    }
    while ((int)p->c.output_scanline < p->r1) {
        int want = p->r1 - (int)p->c.output_scanline, i;
        if (want > 16)
            want = 16;
        for (i = 0; i < want; i++)
            rows[i] = p->dst + ((size_t)p->c.output_scanline + (size_t)i) * (size_t)p->out_w * 3;
        if (jpeg_read_scanlines(&p->c, rows, (JDIMENSION)want) == 0) {
            snprintf(p->err.msg, sizeof(p->err.msg), "no rows from row %u", p->c.output_scanline);
            p->status = PART_FAILED;
            goto out;
        }
    }
    if (p->last)
        jpeg_finish_decompress(&p->c);
    p->status = PART_OK;
out:
    p->seconds = now_s() - t0;
    if (p->dispatched > 0.0)
        p->finished = now_s() - p->dispatched;
    jpeg_destroy_decompress(&p->c);
    p->opened = 0;
}

static void
part_decode(part_t *p)
{
    if (part_open(p) == 0)
        part_run(p);
}

/* ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    int threads; /* parts at most: the caller's thread + threads - 1 helpers */
    int started; /* helper threads running */
    pthread_t tid[MAX_PARTS - 1];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long generation;
    int pending, stop, nparts;
    part_t parts[MAX_PARTS];
    pthread_mutex_t busy; /* one split decode at a time; others go in one piece */
    double skip_ratio;    /* cost of skipping a row / decoding it, learnt */
    unsigned long long calls, split_calls, busy_calls;
    int last_n;                      /* the last split decode's parts */
    int last_rows[MAX_PARTS + 1];
    double last_seconds[MAX_PARTS];
    double last_waited[MAX_PARTS];
} Decoder;

typedef struct {
    Decoder *d;
    int index;
} helper_arg;

static void *
helper_main(void *arg)
{
    helper_arg a = *(helper_arg *)arg;
    Decoder *d = a.d;
    unsigned long seen = 0;
    PyMem_RawFree(arg);
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (d->generation == seen && !d->stop)
            pthread_cond_wait(&d->go, &d->mu);
        if (d->stop)
            break;
        seen = d->generation;
        if (a.index < d->nparts) {
            part_t *p = &d->parts[a.index];
            pthread_mutex_unlock(&d->mu);
            p->waited = now_s() - p->dispatched;
            part_decode(p);
            pthread_mutex_lock(&d->mu);
            if (--d->pending == 0)
                pthread_cond_signal(&d->done);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Row boundaries for n parts so that skip_ratio * r_i + (r_{i+1} - r_i) is the
   same for every part: r_{i+1} = r_i * (1 - e) + T.  Cut at multiples of
   `align` (an iMCU row), so no part decodes a row group it then throws away. */
static void
split_rows(int h, int n, double e, int align, int *r)
{
    double sum = 0.0, q = 1.0, t, x = 0.0;
    int i;
    for (i = 0; i < n; i++) {
        sum += q;
        q *= 1.0 - e;
    }
    t = (double)h / sum;
    r[0] = 0;
    for (i = 1; i < n; i++) {
        int v;
        x = x * (1.0 - e) + t;
        v = (int)(x / align + 0.5) * align;
        if (v <= r[i - 1])
            v = r[i - 1] + align;
        if (v > h)
            v = h;
        r[i] = v;
    }
    r[n] = h;
}

/* A part of one decode: rows [r0, r1) of the frame in data, into dst. */
static void
part_init(part_t *p, const unsigned char *data, size_t len, unsigned char *dst, int out_w, int out_h,
          int r0, int r1, int last)
{
    memset(p, 0, sizeof(*p));
    p->data = data;
    p->len = len;
    p->dst = dst;
    p->out_w = out_w;
    p->out_h = out_h;
    p->r0 = r0;
    p->r1 = r1;
    p->last = last;
}

static int
scale_for(int width, int height, int out_w, int out_h)
{
    int n;
    for (n = 1; n <= 8; n++)
        if ((width * n + 7) / 8 == out_w && (height * n + 7) / 8 == out_h)
            return n;
    return 0;
}

/* Decode into dst with the GIL released.  Returns a PART_* status and the
   message of the first failing part in msg. */
static int
decode_split(Decoder *d, const unsigned char *data, size_t len, unsigned char *dst,
             int out_w, int out_h, char *msg, size_t msg_size)
{
    /* Without the helpers (another caller has them) the one part lives here. */
    part_t local;
    int have = pthread_mutex_trylock(&d->busy) == 0;
    part_t *parts = have ? d->parts : &local, *p0 = parts;
    int n = 1, i, scale, r[MAX_PARTS + 1], status;

    part_init(p0, data, len, dst, out_w, out_h, 0, out_h, 1);
    if (part_open(p0) < 0) {
        status = p0->status;
        snprintf(msg, msg_size, "%s", p0->err.msg);
        goto out;
    }
    scale = scale_for((int)p0->c.image_width, (int)p0->c.image_height, out_w, out_h);
    if (scale == 0) {
        snprintf(msg, msg_size, "a %ux%u JPEG has no n/8 scale of %dx%d (dst's shape)",
                 p0->c.image_width, p0->c.image_height, out_w, out_h);
        jpeg_destroy_decompress(&p0->c);
        status = PART_FAILED;
        goto out;
    }
    p0->scale_num = scale;
    if (have && d->started > 0 && !p0->c.progressive_mode && !p0->c.arith_code &&
        !jpeg_has_multiple_scans(&p0->c) &&
        (uint64_t)p0->c.image_width * p0->c.image_height >= MIN_SPLIT_PIXELS) {
        int align = p0->c.max_v_samp_factor * scale;
        n = d->started + 1;
        if (n > out_h / MIN_PART_ROWS)
            n = out_h / MIN_PART_ROWS;
        if (n < 1)
            n = 1;
        if (n > 1) {
            split_rows(out_h, n, d->skip_ratio, align, r);
            while (n > 1 && r[n - 1] >= out_h) /* rounding ate the last part */
                n--;
            r[n] = out_h;
        }
    }
    if (n > 1) {
        for (i = 1; i < n; i++) {
            part_init(&parts[i], data, len, dst, out_w, out_h, r[i], r[i + 1], i == n - 1);
            parts[i].scale_num = scale;
        }
        p0->r1 = r[1];
        p0->last = 0;
        double t = now_s();
        for (i = 1; i < n; i++)
            parts[i].dispatched = t;
        pthread_mutex_lock(&d->mu);
        d->nparts = n;
        d->pending = n - 1;
        d->generation++;
        pthread_cond_broadcast(&d->go);
        pthread_mutex_unlock(&d->mu);
    }
    part_run(p0);
    if (n > 1) {
        pthread_mutex_lock(&d->mu);
        while (d->pending > 0)
            pthread_cond_wait(&d->done, &d->mu);
        pthread_mutex_unlock(&d->mu);
    }
    status = PART_OK;
    for (i = 0; i < n; i++) {
        if (parts[i].status != PART_OK) {
            status = parts[i].status;
            snprintf(msg, msg_size, "%s", parts[i].err.msg);
            break;
        }
    }
    /* What stats() reads is written under mu: a caller that found the helpers
       busy runs this concurrently (the counters), and stats() may come from
       any thread. */
    pthread_mutex_lock(&d->mu);
    if (status == PART_OK && n > 1) {
        /* Part 0 only decodes: its rate is the decode cost of a row.  The last
           part skips r[n-1] rows and decodes the rest: what is left of its time,
           counted from the hand-off, is the skip cost, and with it the helper's
           wake-up (a VM's idle vCPU can take a millisecond to come back), so the
           cut balances when the parts end.  Smoothed: a preempted part says
           little. */
        part_t *pl = &parts[n - 1];
        double f = p0->seconds / (double)r[1];
        double s = (pl->finished - f * (double)(out_h - r[n - 1])) / (double)r[n - 1];
        double e = f > 0.0 ? s / f : d->skip_ratio;
        if (e < 0.05)
            e = 0.05;
        if (e > 0.95)
            e = 0.95;
        d->skip_ratio = 0.75 * d->skip_ratio + 0.25 * e;
    }
    if (have) {
        d->last_n = n;
        for (i = 0; i <= n; i++)
            d->last_rows[i] = i == 0 ? 0 : (i == n ? out_h : r[i]);
        for (i = 0; i < n; i++) {
            d->last_seconds[i] = parts[i].seconds;
            d->last_waited[i] = parts[i].waited; /* 0 for the caller's part */
        }
    }
    pthread_mutex_unlock(&d->mu);
out:
    pthread_mutex_lock(&d->mu);
    d->calls++;
    if (n > 1)
        d->split_calls++;
    if (!have)
        d->busy_calls++;
    pthread_mutex_unlock(&d->mu);
    if (have)
        pthread_mutex_unlock(&d->busy);
    return status;
}

/* ------------------------------------------------------------------------ */

static int
Decoder_init(Decoder *d, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"threads", NULL};
    int threads = 2, i;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i:JpegDecoder", kwlist, &threads))
        return -1;
    if (d->threads != 0) {
        PyErr_SetString(PyExc_RuntimeError, "JpegDecoder is already initialised");
        return -1;
    }
    if (threads < 1 || threads > MAX_PARTS) {
        PyErr_Format(PyExc_ValueError, "threads must be 1..%d, got %d", MAX_PARTS, threads);
        return -1;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->busy, NULL);
    pthread_cond_init(&d->go, NULL);
    pthread_cond_init(&d->done, NULL);
    d->threads = threads;
    d->skip_ratio = 0.5;
    for (i = 0; i < threads - 1; i++) {
        helper_arg *a = PyMem_RawMalloc(sizeof(*a));
        if (a == NULL)
            break;
        a->d = d;
        a->index = i + 1;
        if (pthread_create(&d->tid[i], NULL, helper_main, a) != 0) {
            PyMem_RawFree(a);
            break;
        }
#ifdef __linux__
        /* Named here, before init returns, so top, py-spy and the tests can
           tell the helpers apart from the moment they exist. */
        pthread_setname_np(d->tid[i], "pyai-jpeg");
#endif
        d->started++;
    }
    return 0;
}

static void
Decoder_dealloc(Decoder *d)
{
    int i;
    if (d->threads != 0) {
        pthread_mutex_lock(&d->mu);
        d->stop = 1;
        pthread_cond_broadcast(&d->go);
        pthread_mutex_unlock(&d->mu);
        Py_BEGIN_ALLOW_THREADS
        for (i = 0; i < d->started; i++)
            pthread_join(d->tid[i], NULL);
        Py_END_ALLOW_THREADS
        pthread_mutex_destroy(&d->mu);
        pthread_mutex_destroy(&d->busy);
        pthread_cond_destroy(&d->go);
        pthread_cond_destroy(&d->done);
    }
    Py_TYPE(d)->tp_free((PyObject *)d);
}

PyDoc_STRVAR(decode_into_doc,
"decode_into(data, dst, /)\n"
"--\n"
"\n"
"Decode the JPEG in data into dst, in place, splitting the rows over the\n"
"decoder's threads.  dst is a writable C-contiguous uint8 buffer of shape\n"
"(h, w, 3) whose size is one of the JPEG's n/8 DCT scales.");

static PyObject *
Decoder_decode_into(Decoder *d, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer src, dst;
    char msg[JMSG_LENGTH_MAX + 64];
    int status, out_w, out_h;
    PyObject *result = NULL;

    if (d->threads == 0) {
        PyErr_SetString(PyExc_RuntimeError, "JpegDecoder was not initialised");
        return NULL;
    }
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "decode_into takes 2 arguments (data, dst), got %zd", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &src, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &dst, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_ND) < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (dst.itemsize != 1 || dst.ndim != 3 || dst.shape[2] != 3 ||
        (dst.format != NULL && strcmp(dst.format, "B") != 0 && strcmp(dst.format, "=B") != 0 &&
         strcmp(dst.format, "<B") != 0)) {
        PyErr_SetString(PyExc_ValueError, "dst must be a uint8 (h, w, 3) buffer");
        goto done;
    }
    if (dst.shape[0] < 1 || dst.shape[1] < 1 || dst.shape[0] > 65535 || dst.shape[1] > 65535) {
        PyErr_SetString(PyExc_ValueError, "dst must have 1..65535 rows and columns");
        goto done;
    }
    if (src.len < 2) {
        PyErr_SetString(PyExc_ValueError, "not a JPEG: fewer than 2 bytes");
        goto done;
    }
    out_h = (int)dst.shape[0];
    out_w = (int)dst.shape[1];
    msg[0] = '\0';
    Py_BEGIN_ALLOW_THREADS
    status = decode_split(d, (const unsigned char *)src.buf, (size_t)src.len,
                          (unsigned char *)dst.buf, out_w, out_h, msg, sizeof(msg));
    Py_END_ALLOW_THREADS
    if (status == PART_UNSUPPORTED)
        PyErr_SetString(PyExc_NotImplementedError, msg);
    else if (status != PART_OK)
        PyErr_SetString(PyExc_ValueError, msg[0] ? msg : "JPEG decoding failed");
    else
    {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

PyDoc_STRVAR(stats_doc,
"stats()\n"
"--\n"
"\n"
"Counters: calls, split_calls (in more than one part), busy_calls (another\n"
"thread held the helpers, so one piece), skip_ratio (learnt cost of skipping\n"
"a row relative to decoding it, the helpers' wake-up included), threads,\n"
"last_parts_ms (first row, end row, decoding ms, ms the helper took to start,\n"
"of each part of the last decode).");

static PyObject *
Decoder_stats(Decoder *d, PyObject *Py_UNUSED(ignored))
{
    PyObject *parts, *out;
    int i, n, rows[MAX_PARTS + 1];
    double seconds[MAX_PARTS], waited[MAX_PARTS], skip_ratio;
    unsigned long long calls, split_calls, busy_calls;

    pthread_mutex_lock(&d->mu);
    n = d->last_n;
    memcpy(rows, d->last_rows, sizeof(rows));
    memcpy(seconds, d->last_seconds, sizeof(seconds));
    memcpy(waited, d->last_waited, sizeof(waited));
    skip_ratio = d->skip_ratio;
    calls = d->calls;
    split_calls = d->split_calls;
    busy_calls = d->busy_calls;
    pthread_mutex_unlock(&d->mu);
    parts = PyList_New(0);
    if (parts == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(iidd)", rows[i], rows[i + 1], seconds[i] * 1e3, waited[i] * 1e3);
        if (t == NULL || PyList_Append(parts, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(t);
    }
    out = Py_BuildValue("{s:K,s:K,s:K,s:d,s:i,s:N}", "calls", calls, "split_calls", split_calls,
                        "busy_calls", busy_calls, "skip_ratio", skip_ratio,
                        "threads", d->started + 1, "last_parts_ms", parts);
    return out;
}

static PyMethodDef Decoder_methods[] = {
    {"decode_into", (PyCFunction)(void (*)(void))Decoder_decode_into, METH_FASTCALL, decode_into_doc},
    {"stats", (PyCFunction)Decoder_stats, METH_NOARGS, stats_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Decoder_doc,
"JpegDecoder(threads=2)\n"
"--\n"
"\n"
"A JPEG decoder that splits one frame's rows over `threads` threads (the\n"
"caller's and threads - 1 helpers it keeps).");

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "native_jpeg.JpegDecoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Decoder_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_methods = Decoder_methods,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_jpeg",
    "Decode one JPEG frame on several cores (libjpeg-turbo, row split with jpeg_skip_scanlines).",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_native_jpeg(void)
{
    PyObject *m;
    if (PyType_Ready(&DecoderType) < 0)
        return NULL;
    m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "JpegDecoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "LIBJPEG_VERSION", JPEG_LIB_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "MAX_THREADS", MAX_PARTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
