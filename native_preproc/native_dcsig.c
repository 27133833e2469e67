/*
 * native_dcsig: the colour of each cell of a grid over a JPEG frame, read
 * from the DC coefficients alone, without decoding the picture.
 *
 * The unchanged-frame gate asks one question per frame: does it look like the
 * last frame the model ran on?  A block's DC coefficient is its mean, so the
 * cell means come out of the entropy-coded data without IDCT, upsampling,
 * colour conversion of pixels or any store.  What is left is walking the
 * Huffman codes, and libjpeg-turbo does that at ~0.9 ms for a 720p frame even
 * at 1/8 scale, because it extracts every AC value it then throws away.  This
 * walker only needs each AC code's length: one table lookup gives a code's
 * length plus its value bits, so an AC coefficient costs a lookup and a shift.
 *
 * It may stop early, and always at the same place: once the first stop_rows
 * cell rows are complete (whichever core walked them) it asks the caller's
 * stop function about them, once, and a yes ends the walk, so a cut to another
 * scene costs those rows only.  The verdict is the caller's (the gate's one
 * definition of a changed frame), never a matter of how the walk was split.
 *
 * Baseline (SOF0/SOF1), 8-bit, one interleaved scan, grey or three components
 * with sampling factors dividing the largest: everything else (progressive,
 * arithmetic, 12-bit, CMYK) is NotImplementedError, and the caller takes
 * another path.  It is stricter than libjpeg: whatever libjpeg would warn
 * about (bad code, premature end, extraneous bytes, a restart marker out of
 * sequence) is a ValueError here, and so are a few things libjpeg lets pass
 * (a run past coefficient 63, anything but EOI after the scan), so a frame
 * the plugin's decoder rejects never gets a signature.
 */

/* No fused multiply-adds, whatever the build's flags: the cell means must be the
   same to the bit on x86-64 and aarch64 (where gcc fuses by default), so that
   the gate's verdicts are. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef DCSIG_NO_PYTHON
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <sched.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* Lookup width of the Huffman tables: codes up to this many bits decode in
   one lookup (nearly all of a camera frame's), longer ones bit by bit. */
#define FAST_BITS 10
/* Lookup width of the AC tables that take several codes at once. */
#define GROUP_BITS 12
#define MAX_GRID 64
/* Scan data a frame needs before its walk is split over two cores: below it,
   waking the helper costs more than it saves.  The fuzz target lowers it so
   small inputs take the split path too. */
#ifndef SPLIT_MIN_BYTES
#define SPLIT_MIN_BYTES (24 * 1024)
#endif
#define MAX_COMPS 3

typedef struct {
    /* Fast lookup on the next FAST_BITS bits: code length (0 = longer code)
       and symbol. */
    uint8_t len[1 << FAST_BITS];
    uint8_t sym[1 << FAST_BITS];
    /* AC walk: bits to drop (code + value bits) and how far k moves
       (run + 1, 16 for ZRL, 128 for EOB); 0 bits = longer code. */
    uint16_t ac[1 << FAST_BITS];
    /* AC walk, several codes a lookup: the codes (with their value bits) that
       fit whole in the next GROUP_BITS bits, up to and with an EOB: bits to
       drop (bits 0-4), how far k moves (8-15, +128 for an EOB) and how far it
       moves before the last code (16-22: the group is only taken while that
       stays inside the block); 0 = not even one code fits. */
    uint32_t group[1 << GROUP_BITS];
    /* Canonical decoding of the longer codes (libjpeg's F.2.2.3). */
    int32_t maxcode[18];
    int32_t valoff[17];
    uint8_t vals[256];
} huff_t;

typedef struct {
    int id, h, v, tq, td, ta;
} comp_t;

typedef struct {
    const uint8_t *p, *end;
    uint64_t buf; /* MSB first */
    int bits;     /* bits in buf */
    int fake;     /* of those, zero bits fed past a marker or the end */
    int at_marker;
    uint64_t loaded; /* data bits loaded so far, counted from the scan's start */
} bits_t;

typedef struct {
    int width, height, ncomp, hmax, vmax, restart;
    comp_t comp[MAX_COMPS];
    int q0[4];
    int qdefined[4];
    const huff_t *dc[4], *ac[4];
    void *owned[8]; /* tables built for this frame alone (the cache was full) */
    int nowned;
    int transform; /* -1 unknown, 0 RGB, 1 YCbCr (Adobe) */
    int jfif;
    const uint8_t *scan; /* first byte of entropy-coded data */
    const uint8_t *end;
} jpeg_t;

typedef enum { OK = 0, CORRUPT = 1, UNSUPPORTED = 2 } status_t;

typedef struct {
    status_t status;
    const char *why;
} result_t;

#define FAIL(st, msg)                \
    do {                             \
        res->status = (st);          \
        res->why = (msg);            \
        return -1;                   \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Markers                                                                  */

/* The code of length <= n at the top of the n-bit value x, from the fast
   table: its length, or 0. */
static int
short_code(const huff_t *t, unsigned x, int n, int *sym)
{
    unsigned look = n >= FAST_BITS ? x >> (n - FAST_BITS) : x << (FAST_BITS - n);
    int l = t->len[look];
    if (!l || l > n)
        return 0;
    *sym = t->sym[look];
    return l;
}

static void
build_groups(huff_t *t)
{
    for (unsigned i = 0; i < (1u << GROUP_BITS); i++) {
        int pos = 0, adv = 0, before_last = 0, count = 0, eob = 0;
        while (count < 4) {
            int left = GROUP_BITS - pos, sym;
            if (left <= 0)
                break;
            unsigned x = i & ((1u << left) - 1);
            int l = short_code(t, x, left, &sym);
            if (!l)
                break;
            int run = sym >> 4, size = sym & 15;
            if (l + size > left)
                break;
            if (sym == 0x00) {
                pos += l;
                before_last = adv;
                eob = 1;
                count++;
                break;
            }
            if (size == 0 && run != 15)
                break; /* not a baseline AC code: the slow path says so */
            before_last = adv;
            adv += size ? run + 1 : 16;
            pos += l + size;
            count++;
        }
        if (count)
            t->group[i] = (uint32_t)pos | (uint32_t)(adv + (eob ? 128 : 0)) << 8 | (uint32_t)before_last << 16;
    }
}

static int
build_huff(huff_t *t, const uint8_t *counts, const uint8_t *vals, int nvals, int is_ac, result_t *res)
{
    int code = 0, k = 0;
    memset(t, 0, sizeof *t);
    memcpy(t->vals, vals, (size_t)nvals);
    /* libjpeg refuses a DC table with a symbol over 15 (when the scan uses it). */
    for (int i = 0; !is_ac && i < nvals; i++)
        if (vals[i] > 15)
            FAIL(CORRUPT, "bad Huffman table");
    for (int l = 1; l <= 16; l++) {
        t->valoff[l] = k - code;
        int n = counts[l - 1];
        if (n) {
            for (int i = 0; i < n; i++, k++, code++) {
                /* More codes than the length has room for: refused below by
                   libjpeg's rule too, but before writing past the lookup. */
                if (code >= (1 << l))
                    FAIL(CORRUPT, "bad Huffman table");
                if (l <= FAST_BITS) {
                    int lo = code << (FAST_BITS - l), span = 1 << (FAST_BITS - l);
                    for (int j = 0; j < span; j++) {
                        uint8_t s = vals[k];
                        t->len[lo + j] = (uint8_t)l;
                        t->sym[lo + j] = s;
                        if (is_ac) {
                            int run = s >> 4, size = s & 15, step;
                            if (size)
                                step = run + 1;
                            else
                                step = run == 15 ? 16 : (run == 0 ? 128 : 64 + 1);
                            t->ac[lo + j] = (uint16_t)((step << 8) | (l + size));
                        }
                    }
                }
            }
            t->maxcode[l] = code - 1;
        } else {
            t->maxcode[l] = -1;
        }
        /* libjpeg refuses a table that gives out an all-ones code. */
        if (code >= (1 << l) && k > 0)
            FAIL(CORRUPT, "bad Huffman table");
        code <<= 1;
    }
    t->maxcode[17] = 0x7fffffff;
    if (is_ac)
        build_groups(t);
    return 0;
}

/* Built tables, kept for the process: a camera sends the same tables with every
   frame, and building an AC table's group lookup takes tens of microseconds.
   Never evicted (a frame in flight may use any of them); once the slots are
   taken, a frame's other tables are built for it alone. */
#define CACHE_SLOTS 16
typedef struct {
    int is_ac, nvals;
    uint8_t key[16 + 256];
    huff_t table;
} cached_t;
static cached_t *cache[CACHE_SLOTS];
static int cache_used;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static const huff_t *
table_for(jpeg_t *j, const uint8_t *counts, const uint8_t *vals, int nvals, int is_ac, result_t *res)
{
    pthread_mutex_lock(&cache_mu);
    for (int i = 0; i < cache_used; i++) {
        const cached_t *e = cache[i];
        if (e->is_ac == is_ac && e->nvals == nvals && !memcmp(e->key, counts, 16) &&
            !memcmp(e->key + 16, vals, (size_t)nvals)) {
            pthread_mutex_unlock(&cache_mu);
            return &e->table;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    cached_t *e = (cached_t *)malloc(sizeof *e);
    if (!e) {
        res->status = CORRUPT;
        res->why = "out of memory";
        return NULL;
    }
    if (build_huff(&e->table, counts, vals, nvals, is_ac, res)) {
        free(e);
        return NULL;
    }
    e->is_ac = is_ac;
    e->nvals = nvals;
    memcpy(e->key, counts, 16);
    memcpy(e->key + 16, vals, (size_t)nvals);
    pthread_mutex_lock(&cache_mu);
    if (cache_used < CACHE_SLOTS) {
        cache[cache_used++] = e;
        pthread_mutex_unlock(&cache_mu);
        return &e->table;
    }
    pthread_mutex_unlock(&cache_mu);
    if (j->nowned == 8) {
        free(e);
        res->status = CORRUPT;
        res->why = "more than 8 Huffman tables";
        return NULL;
    }
    j->owned[j->nowned++] = e;
    return &e->table;
}

static inline int
be16(const uint8_t *p)
{
    return (p[0] << 8) | p[1];
}

static int
parse_headers(const uint8_t *data, size_t size, jpeg_t *j, result_t *res)
{
    const uint8_t *p = data, *end = data + size;
    int sof = 0;
    memset(j, 0, sizeof *j);
    j->transform = -1;
    j->end = end;
    if (size < 4 || p[0] != 0xFF || p[1] != 0xD8)
        FAIL(CORRUPT, "not a JPEG");
    p += 2;
    for (;;) {
        if (p >= end || *p != 0xFF)
            FAIL(CORRUPT, "no marker where one was expected");
        while (p < end && *p == 0xFF)
            p++;
        if (p >= end)
            FAIL(CORRUPT, "truncated headers");
        int m = *p++;
        if (m == 0xD9 || (m >= 0xD0 && m <= 0xD7) || m == 0x01)
            FAIL(CORRUPT, "no scan");
        if (end - p < 2)
            FAIL(CORRUPT, "truncated headers");
        int len = be16(p);
        if (len < 2 || end - p < len)
            FAIL(CORRUPT, "truncated headers");
        const uint8_t *s = p + 2, *e = p + len;
        switch (m) {
        case 0xC0:
        case 0xC1:
            if (sof)
                FAIL(CORRUPT, "two frame headers");
            sof = 1;
            if (e - s < 6 || s[0] != 8)
                FAIL(UNSUPPORTED, "not 8-bit");
            j->height = be16(s + 1);
            j->width = be16(s + 3);
            j->ncomp = s[5];
            if (j->width == 0 || j->height == 0)
                FAIL(UNSUPPORTED, "height from a DNL marker");
            if (j->ncomp != 1 && j->ncomp != 3)
                FAIL(UNSUPPORTED, "neither grey nor three components");
            if (e - s != 6 + 3 * j->ncomp)
                FAIL(CORRUPT, "bad frame header length");
            for (int i = 0; i < j->ncomp; i++) {
                comp_t *c = &j->comp[i];
                c->id = s[6 + 3 * i];
                c->h = s[7 + 3 * i] >> 4;
                c->v = s[7 + 3 * i] & 15;
                c->tq = s[8 + 3 * i];
                if (c->h < 1 || c->h > 4 || c->v < 1 || c->v > 4 || c->tq > 3)
                    FAIL(CORRUPT, "bad component");
                if (c->h > j->hmax)
                    j->hmax = c->h;
                if (c->v > j->vmax)
                    j->vmax = c->v;
            }
            for (int i = 0; i < j->ncomp; i++)
                if (j->hmax % j->comp[i].h || j->vmax % j->comp[i].v)
                    FAIL(UNSUPPORTED, "sampling factors that do not divide");
            if (j->ncomp == 1)
                j->hmax = j->vmax = j->comp[0].h = j->comp[0].v = 1;
            break;
        case 0xC2: case 0xC3: case 0xC5: case 0xC6: case 0xC7: case 0xC8:
        case 0xC9: case 0xCA: case 0xCB: case 0xCD: case 0xCE: case 0xCF:
            FAIL(UNSUPPORTED, "not a baseline Huffman JPEG");
        case 0xC4:
            while (s < e) {
                if (e - s < 17)
                    FAIL(CORRUPT, "short Huffman table");
                int cls = s[0] >> 4, id = s[0] & 15, n = 0;
                if (cls > 1 || id > 3)
                    FAIL(CORRUPT, "bad Huffman table");
                for (int i = 0; i < 16; i++)
                    n += s[1 + i];
                if (n > 256 || e - s < 17 + n)
                    FAIL(CORRUPT, "bad Huffman table");
                const huff_t *t = table_for(j, s + 1, s + 17, n, cls, res);
                if (!t)
                    return -1;
                if (cls)
                    j->ac[id] = t;
                else
                    j->dc[id] = t;
                s += 17 + n;
            }
            break;
        case 0xDB:
            while (s < e) {
                int pq = s[0] >> 4, id = s[0] & 15, n = pq ? 129 : 65;
                if (id > 3 || pq > 1 || e - s < n)
                    FAIL(CORRUPT, "bad quantisation table");
                j->q0[id] = pq ? be16(s + 1) : s[1];
                j->qdefined[id] = 1;
                s += n;
            }
            break;
        case 0xDD:
            if (e - s != 2)
                FAIL(CORRUPT, "bad restart interval length");
            j->restart = be16(s);
            break;
        case 0xE0:
            if (e - s >= 14 && !memcmp(s, "JFIF", 5)) {
                j->jfif = 1;
                /* libjpeg warns of other revisions (libjpeg-turbo 2.1 of 2.x
                   too: found by the fuzz target), and the plugin's decoders
                   take a warning as an error. */
                if (s[5] != 1)
                    FAIL(CORRUPT, "unknown JFIF revision");
            }
            break;
        case 0xEE:
            if (e - s >= 12 && !memcmp(s, "Adobe", 5))
                j->transform = s[11];
            break;
        case 0xDA: {
            if (!sof)
                FAIL(CORRUPT, "scan before frame header");
            int ns = e - s >= 1 ? s[0] : 0;
            if (ns < 1 || ns > 4 || e - s != 4 + 2 * ns)
                FAIL(CORRUPT, "bad scan header length");
            if (ns != j->ncomp)
                FAIL(UNSUPPORTED, "more than one scan");
            for (int i = 0; i < ns; i++) {
                int cid = s[1 + 2 * i], tables = s[2 + 2 * i], k;
                for (k = 0; k < j->ncomp; k++)
                    if (j->comp[k].id == cid)
                        break;
                /* libjpeg takes scan components in frame order only. */
                if (k != i)
                    FAIL(UNSUPPORTED, "scan components out of frame order");
                j->comp[k].td = tables >> 4;
                j->comp[k].ta = tables & 15;
                if (j->comp[k].td > 3 || j->comp[k].ta > 3)
                    FAIL(CORRUPT, "bad table selector");
            }
            const uint8_t *sp = s + 1 + 2 * ns;
            if (sp[0] != 0 || sp[1] != 63 || sp[2] != 0)
                FAIL(UNSUPPORTED, "not a sequential scan");
            for (int i = 0; i < j->ncomp; i++) {
                comp_t *c = &j->comp[i];
                if (!j->qdefined[c->tq] || !j->dc[c->td] || !j->ac[c->ta])
                    FAIL(CORRUPT, "a table the scan uses is missing");
            }
            if (j->ncomp == 3) {
                /* libjpeg's colour space guess (jdapimin.c default_decompress_parms). */
                if (j->jfif)
                    j->transform = 1;
                else if (j->transform > 1)
                    FAIL(CORRUPT, "unknown Adobe transform"); /* a libjpeg warning */
                else if (j->transform < 0)
                    j->transform = j->comp[0].id == 'R' && j->comp[1].id == 'G' && j->comp[2].id == 'B' ? 0 : 1;
            }
            j->scan = e;
            return 0;
        }
        case 0xCC: /* DAC: arithmetic conditioning, nothing for a Huffman scan */
        case 0xDC: /* DNL */
        case 0xFE: /* COM */
            break;
        default:
            /* APPn are skipped; anything else libjpeg refuses (a second SOI, a
               reserved or JPGn marker). */
            if (m >= 0xE0 && m <= 0xEF)
                break;
            FAIL(CORRUPT, "unknown marker");
        }
        p = e;
    }
}

/* ------------------------------------------------------------------------ */
/* Bits                                                                     */

static inline void
fill(bits_t *b)
{
    /* Eight bytes at a time while none is 0xFF (no stuffing, no marker). */
    if (b->bits <= 56 && !b->at_marker && b->end - b->p >= 8) {
        uint64_t w;
        memcpy(&w, b->p, 8);
        w = __builtin_bswap64(w);
        uint64_t nw = ~w;
        if (!((nw - 0x0101010101010101ULL) & ~nw & 0x8080808080808080ULL)) {
            int n = (64 - b->bits) >> 3;
            uint64_t keep = n == 8 ? w : w & ~(~0ULL >> (8 * n));
            b->buf |= keep >> b->bits;
            b->bits += 8 * n;
            b->loaded += 8 * (uint64_t)n;
            b->p += n;
            return;
        }
    }
    while (b->bits <= 56) {
        unsigned c = 0;
        if (!b->at_marker && b->p < b->end) {
            c = *b->p;
            if (c == 0xFF) {
                if (b->end - b->p >= 2 && b->p[1] == 0x00) {
                    b->p += 2;
                } else {
                    b->at_marker = 1;
                    c = 0;
                    b->fake += 8;
                }
            } else {
                b->p++;
            }
            if (!b->at_marker)
                b->loaded += 8;
        } else {
            b->fake += 8;
        }
        b->buf |= (uint64_t)c << (56 - b->bits);
        b->bits += 8;
    }
}

#define PEEK(b, n) ((unsigned)((b)->buf >> (64 - (n))))
#define DROP(b, n)           \
    do {                     \
        (b)->buf <<= (n);    \
        (b)->bits -= (n);    \
    } while (0)

/* A code longer than FAST_BITS: bit by bit from FAST_BITS + 1 (F.2.2.3). */
static inline int
slow_symbol(bits_t *b, const huff_t *t)
{
    for (int l = FAST_BITS + 1; l <= 16; l++) {
        int code = (int)PEEK(b, l);
        if (code <= t->maxcode[l]) {
            DROP(b, l);
            return t->vals[(t->valoff[l] + code) & 255];
        }
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Cells                                                                    */

typedef struct {
    int gx, gy;
    /* Per component: cell column of each block column, cell row of each block
       row (-1 outside the box). */
    int16_t *col[MAX_COMPS], *row[MAX_COMPS];
    int ncol[MAX_COMPS][MAX_GRID], nrow[MAX_COMPS][MAX_GRID];
    int32_t *sum[MAX_COMPS]; /* gy * gx each */
    /* MCU row after which each cell row is complete. */
    int band_end[MAX_GRID];
} cells_t;

static void
cell_map(int16_t *map, int *count, int nblocks, int footprint, int lo, int hi, int g)
{
    double span = (double)(hi - lo);
    for (int i = 0; i < nblocks; i++) {
        double centre = (i + 0.5) * footprint;
        int cell = -1;
        if (centre >= lo && centre < hi) {
            cell = (int)((centre - lo) * g / span);
            if (cell >= g)
                cell = g - 1;
            count[cell]++;
        }
        map[i] = (int16_t)cell;
    }
}

static void
cell_rgb(const jpeg_t *j, const cells_t *c, int cy, int cx, float out[3])
{
    float m[MAX_COMPS];
    int cell = cy * c->gx + cx;
    for (int k = 0; k < j->ncomp; k++) {
        int n = c->nrow[k][cy] * c->ncol[k][cx];
        /* A block's mean is 128 + its dequantised DC / 8. */
        m[k] = 128.0f + (float)c->sum[k][cell] * (float)j->q0[j->comp[k].tq] / (8.0f * (float)n);
    }
    if (j->ncomp == 1) {
        out[0] = out[1] = out[2] = m[0];
    } else if (j->transform == 0) {
        out[0] = m[0], out[1] = m[1], out[2] = m[2];
    } else {
        float y = m[0], cb = m[1] - 128.0f, cr = m[2] - 128.0f;
        out[0] = y + 1.40200f * cr;
        out[1] = y - 0.34414f * cb - 0.71414f * cr;
        out[2] = y + 1.77200f * cb;
    }
}

/* ------------------------------------------------------------------------ */
/* The walk                                                                 */

/* The blocks of one MCU, and where the MCUs are. */
typedef struct {
    int nb, bc[10], bx[10], by[10];
    const huff_t *dct[MAX_COMPS], *act[MAX_COMPS];
    int mcux, mcuy;
    long total;
} layout_t;

enum { MCU_OK = 0, MCU_BAD_CODE, MCU_BAD_DC, MCU_PAST_BLOCK };
static const char *mcu_error[] = {"", "bad Huffman code", "bad DC difference", "coefficients past the end of a block"};

static int
make_layout(const jpeg_t *j, layout_t *L, result_t *res)
{
    memset(L, 0, sizeof *L);
    /* A grey frame's one component is 1x1 (parse_headers): its MCU is one block. */
    L->mcux = (j->width + 8 * j->hmax - 1) / (8 * j->hmax);
    L->mcuy = (j->height + 8 * j->vmax - 1) / (8 * j->vmax);
    L->total = (long)L->mcux * L->mcuy;
    for (int k = 0; k < j->ncomp; k++) {
        for (int v = 0; v < j->comp[k].v; v++)
            for (int h = 0; h < j->comp[k].h; h++) {
                if (L->nb == 10)
                    FAIL(UNSUPPORTED, "more than 10 blocks in an MCU");
                L->bc[L->nb] = k, L->bx[L->nb] = h, L->by[L->nb] = v, L->nb++;
            }
        L->dct[k] = j->dc[j->comp[k].td];
        L->act[k] = j->ac[j->comp[k].ta];
    }
    return 0;
}

/* One MCU: each block's DC difference into diff[], its AC codes walked over. */
static inline int
decode_mcu(bits_t *b, const layout_t *L, int *diff)
{
    for (int i = 0; i < L->nb; i++) {
        int k = L->bc[i];
        const huff_t *t = L->dct[k];
        if (b->bits < 32)
            fill(b);
        unsigned look = PEEK(b, FAST_BITS);
        int l = t->len[look], s;
        if (l) {
            DROP(b, l);
            s = t->sym[look];
        } else if ((s = slow_symbol(b, t)) < 0) {
            return MCU_BAD_CODE;
        }
        int v = 0;
        if (s) {
            if (s > 11)
                return MCU_BAD_DC;
            v = (int)PEEK(b, s);
            DROP(b, s);
            if (v < (1 << (s - 1)))
                v -= (1 << s) - 1;
        }
        diff[i] = v;

        const huff_t *a = L->act[k];
        int n = 1;
        while (n < 64) {
            if (b->bits < 32)
                fill(b);
            uint32_t g = a->group[PEEK(b, GROUP_BITS)];
            if (g && n + (int)(g >> 16) < 64) {
                DROP(b, g & 31);
                n += (g >> 8) & 255;
                continue;
            }
            unsigned e = a->ac[PEEK(b, FAST_BITS)];
            if (e) {
                DROP(b, e & 255);
                n += e >> 8;
            } else {
                int sym = slow_symbol(b, a);
                if (sym < 0)
                    return MCU_BAD_CODE;
                int run = sym >> 4, size = sym & 15;
                if (size) {
                    DROP(b, size);
                    n += run + 1;
                } else if (run == 15) {
                    n += 16;
                } else if (run == 0) {
                    break; /* EOB */
                } else {
                    return MCU_PAST_BLOCK;
                }
            }
        }
        if (n > 64 && n < 128)
            return MCU_PAST_BLOCK;
    }
    return MCU_OK;
}

static inline uint64_t
bit_pos(const bits_t *b)
{
    return b->loaded - (uint64_t)(b->bits - b->fake);
}

/* At the end of the scan: fewer than 8 bits of padding left, then EOI (libjpeg
   counts whole unused bytes as corrupt data). */
static int
at_end(const bits_t *b)
{
    if (b->fake > b->bits || b->bits - b->fake >= 8)
        return 0;
    const uint8_t *p = b->p;
    if (p >= b->end || *p != 0xFF)
        return 0;
    while (p < b->end && *p == 0xFF)
        p++;
    return p < b->end && *p == 0xD9;
}

/* Past a restart marker at the reader's position: its number, or -1. */
static int
take_restart(bits_t *b)
{
    if (b->fake > b->bits || b->bits - b->fake >= 8)
        return -1;
    const uint8_t *p = b->p;
    if (p >= b->end || *p != 0xFF)
        return -1;
    while (p < b->end && *p == 0xFF)
        p++;
    if (p >= b->end || *p < 0xD0 || *p > 0xD7)
        return -1;
    b->p = p + 1;
    b->buf = 0;
    b->bits = 0;
    b->fake = 0;
    b->at_marker = 0;
    return *p - 0xD0;
}

/* Data bytes (stuffed 0xFF 0x00 counts one, markers none) in [p, stop). */
static uint64_t
data_bytes(const uint8_t *p, const uint8_t *stop, const uint8_t *end)
{
    uint64_t n = 0;
    while (p < stop) {
        const uint8_t *q = (const uint8_t *)memchr(p, 0xFF, (size_t)(stop - p));
        if (!q)
            return n + (uint64_t)(stop - p);
        n += (uint64_t)(q - p);
        if (q + 1 < end && q[1] == 0x00) {
            n += 1;
            p = q + 2;
        } else {
            while (q < end && *q == 0xFF)
                q++;
            p = q + 1;
        }
    }
    return n;
}

/* --- the second core: a speculative walk from the middle -----------------
   Huffman codes resynchronise: a walk started at an arbitrary byte is soon on
   the true code boundaries and, a few MCUs later, on the true block of the
   MCU too.  It records where each MCU it sees starts (in data bits from the
   scan's start) and its DC differences.  The main walk, once past that byte,
   looks for an MCU start of its own among the recorded ones: from that MCU on
   the two walks are one and the same, so the main walk stops and adds the
   recorded differences to its own DC predictors.  With restart markers, the
   second walk starts at one and is on the true MCUs from its first. */

/* Where the second walk starts, as a shift from the middle of the data (a
fraction of it), learnt from the last split walks: the two walks should end
together, but the helper starts late by its wake-up (tens of microseconds when
it ran a moment ago, a tenth of a millisecond and more after an idle spell), and
the two cores do not always run at one speed. After each split walk the point
moves by half of what would have evened out the two ends. */
static double learnt_shift;

static double
now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* ``late``: how much later the second walk ended than the first reached its
   start (negative: earlier), in microseconds; ``share``: the fraction of the data
   the first walk covered in ``took`` microseconds. */
static void
learn_split(double late, double share, double took)
{
    if (took <= 0.0)
        return;
    double shift = learnt_shift + 0.5 * (share / took) * late / 2.0;
    learnt_shift = shift < -0.25 ? -0.25 : (shift > 0.25 ? 0.25 : shift);
}

typedef struct {
    uint64_t pos;
    int16_t diff[10];
    uint8_t reset;   /* 1 + the number of the restart marker just before it */
    uint8_t overrun; /* it read past the end of the data */
    uint8_t tail_ok; /* after it, the scan may end (at_end) */
    uint8_t gap;     /* the walk before it hit a bad code and went on from there */
} rec_t;

typedef struct {
    const jpeg_t *j;
    const layout_t *L;
    const uint8_t *start;
    int at_rst;
    uint64_t start_pos;
    rec_t *rec;
    long cap;
    long nrec;  /* published with release order */
    int done;   /* likewise */
    int cancel; /* set by the main walk */
    const char *why; /* why it stopped before the end of the data, if it did */
    double t_submit, t_start, t_done; /* us */
    int caller_cpu; /* -1: unknown */
} spec_t;

static int helper_kept_off = -1; /* the core the helper is kept off, -1: none */

/* Keep the helper off the caller's core. After an idle spell the scheduler
   tends to wake the helper on the core of the thread that woke it, where the
   two walks then take turns: twice the time instead of half. */
static void
keep_off(int cpu)
{
#ifdef __linux__
    if (cpu < 0 || cpu == helper_kept_off)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    /* This thread's own mask is narrowed already: start from the main thread's. */
    if (sched_getaffinity(getpid(), sizeof set, &set) != 0 || CPU_COUNT(&set) < 2 || !CPU_ISSET(cpu, &set))
        return;
    CPU_CLR(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0)
        helper_kept_off = cpu;
#else
    (void)cpu;
#endif
}

static void
spec_run(spec_t *s)
{
    const jpeg_t *j = s->j;
    bits_t b = {s->start, j->end, 0, 0, 0, 0, s->start_pos};
    int reset = 0, since = 0, gap = 0, gaps = 0, diff[10];
    s->t_start = now_us();
    keep_off(s->caller_cpu);
    if (s->at_rst) {
        int num = take_restart(&b);
        if (num < 0)
            goto out;
        reset = 1 + num;
    }
    for (long n = 0, step = 0; n < s->cap; n++, step++) {
        if ((step & 15) == 0 && __atomic_load_n(&s->cancel, __ATOMIC_RELAXED))
            break;
        if (j->restart && s->at_rst && since == j->restart) {
            int num = take_restart(&b);
            if (num < 0) {
                s->why = "restart marker missing or after extraneous bytes";
                break;
            }
            reset = 1 + num;
            since = 0;
        }
        rec_t *r = &s->rec[n];
        r->pos = bit_pos(&b);
        r->reset = (uint8_t)reset;
        r->gap = (uint8_t)gap;
        reset = gap = 0;
        int st = decode_mcu(&b, s->L, diff);
        if (st != MCU_OK) {
            /* Not yet on the true codes (from the middle, a code that does not
               exist is no news): go on from the next bit, and mark the gap so
               that a true error, after the walks met, is still one. From a
               restart marker the walk is on the true codes from the start. */
            if (s->at_rst || ++gaps > 256 || b.fake > b.bits) {
                s->why = mcu_error[st];
                break;
            }
            DROP(&b, 1);
            gap = 1;
            n--;
            continue;
        }
        for (int i = 0; i < s->L->nb; i++)
            r->diff[i] = (int16_t)diff[i];
        r->overrun = b.fake > b.bits;
        r->tail_ok = !r->overrun && (b.at_marker || b.end - b.p < 16) && at_end(&b);
        since++;
        __atomic_store_n(&s->nrec, n + 1, __ATOMIC_RELEASE);
        if (r->overrun)
            break;
    }
out:
    s->t_done = now_us();
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
}

/* One helper thread for the process, started on first use. */
static pthread_mutex_t helper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cv = PTHREAD_COND_INITIALIZER;
static spec_t *helper_job;
static int helper_started, helper_busy;
/* The records of the one walk the helper serves at a time, kept between frames. */
static rec_t *rec_pool;
static long rec_pool_cap;

static void *
helper_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&helper_mu);
        while (!helper_job)
            pthread_cond_wait(&helper_cv, &helper_mu);
        spec_t *s = helper_job;
        helper_job = NULL;
        pthread_mutex_unlock(&helper_mu);
        spec_run(s);
    }
    return NULL;
}

static void
helper_after_fork(void)
{
    /* The thread is not in the child: start another there when needed. */
    pthread_mutex_init(&helper_mu, NULL);
    pthread_cond_init(&helper_cv, NULL);
    helper_job = NULL;
    helper_started = helper_busy = 0;
    helper_kept_off = -1;
}

/* Hand the speculative walk to the helper: 0 when it is busy with another
   caller's frame (then this one is walked on one core). The caller owns the
   helper, and the records, until helper_release. */
static int
helper_submit(spec_t *s)
{
    pthread_mutex_lock(&helper_mu);
    if (helper_busy) {
        pthread_mutex_unlock(&helper_mu);
        return 0;
    }
    if (rec_pool_cap < s->cap) {
        rec_t *grown = (rec_t *)realloc(rec_pool, sizeof(rec_t) * (size_t)s->cap);
        if (!grown) {
            pthread_mutex_unlock(&helper_mu);
            return 0;
        }
        rec_pool = grown;
        rec_pool_cap = s->cap;
    }
    s->rec = rec_pool;
    if (!helper_started) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, helper_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc) {
            pthread_mutex_unlock(&helper_mu);
            return 0;
        }
        static int registered;
        if (!registered) {
            pthread_atfork(NULL, NULL, helper_after_fork);
            registered = 1;
        }
        helper_started = 1;
    }
    helper_busy = 1;
    helper_job = s;
    pthread_cond_signal(&helper_cv);
    pthread_mutex_unlock(&helper_mu);
    return 1;
}

/* Wait for the helper's walk to end; a walk not taken yet is withdrawn. */
static void
helper_join(spec_t *s)
{
    pthread_mutex_lock(&helper_mu);
    if (helper_job == s) {
        /* A helper that slept through an idle spell can take a tenth of a
           millisecond and more to wake, longer than a walk that stopped at its
           first row of cells: nobody needs it any more. */
        helper_job = NULL;
        pthread_mutex_unlock(&helper_mu);
        return;
    }
    pthread_mutex_unlock(&helper_mu);
    while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
        sched_yield();
}

static void
helper_release(void)
{
    pthread_mutex_lock(&helper_mu);
    helper_busy = 0;
    pthread_mutex_unlock(&helper_mu);
}

/* Where the second walk starts: the first restart marker past the middle of
   the data, or (without restart markers) the middle itself, off any stuffed
   byte or marker. NULL: no split. */
static const uint8_t *
split_point(const jpeg_t *j, int *at_rst)
{
    ptrdiff_t len = j->end - j->scan;
    const uint8_t *mid = j->scan + len / 2 + (ptrdiff_t)(learnt_shift * (double)len);
    *at_rst = 0;
    if (j->restart) {
        const uint8_t *p = mid;
        while (p + 1 < j->end) {
            const uint8_t *q = (const uint8_t *)memchr(p, 0xFF, (size_t)(j->end - 1 - p));
            if (!q)
                return NULL;
            if (q[1] >= 0xD0 && q[1] <= 0xD7) {
                *at_rst = 1;
                return q;
            }
            p = q + 1;
        }
        return NULL;
    }
    while (mid < j->end && mid[-1] == 0xFF)
        mid++;
    return mid + 64 < j->end ? mid : NULL;
}

/* --- the main walk ------------------------------------------------------- */

/* Asked once, about the first rows cell rows of out (rows * gx * 3 floats):
   1 ends the walk (a changed frame), 0 goes on. */
typedef int (*stop_fn)(void *ctx, const float *out, int rows, int gx);

typedef struct {
    float *out;       /* gy * gx * 3 */
    stop_fn stop;     /* or NULL: walk to the end */
    void *stop_ctx;
    int stop_rows;    /* ask stop when this many cell rows are complete */
    int stopped;      /* 1: stop said so */
    int threads;      /* 2: split when worth it */
    int split;        /* out: 1 when the second walk's MCUs were used */
    int band;
} walk_t;

static inline void
add_mcu(const jpeg_t *j, const layout_t *L, cells_t *c, int mx, int my, const int *diff, int *pred)
{
    for (int i = 0; i < L->nb; i++) {
        int k = L->bc[i];
        pred[k] += diff[i];
        int16_t cx = c->col[k][mx * j->comp[k].h + L->bx[i]];
        int16_t cy = c->row[k][my * j->comp[k].v + L->by[i]];
        if (cx >= 0 && cy >= 0)
            c->sum[k][cy * c->gx + cx] += pred[k];
    }
}

/* Cell rows complete after MCU row my: their means, and 1 when the stop
   function, asked the moment the first stop_rows rows are complete (only
   then, and only when rows are left to walk), says the frame has changed.
   Only the walk's own thread gets here, from the top or from the second
   core's records, so it is asked about the same rows whatever the split. */
static int
rows_done(const jpeg_t *j, cells_t *c, walk_t *w, int my)
{
    int far = 0;
    while (w->band < c->gy && c->band_end[w->band] <= my) {
        int band = w->band;
        for (int cx = 0; cx < c->gx; cx++)
            cell_rgb(j, c, band, cx, w->out + 3 * (band * c->gx + cx));
        w->band++;
        if (w->stop && w->band == w->stop_rows && w->band < c->gy)
            far = w->stop(w->stop_ctx, w->out, w->band, c->gx) != 0;
    }
    return far;
}

static int
walk(const jpeg_t *j, const layout_t *L, cells_t *c, walk_t *w, result_t *res)
{
    /* The second core from the middle, for frames where it pays. */
    spec_t spec, *s = NULL;
    int submitted = 0;
    memset(&spec, 0, sizeof spec);
    if (w->threads > 1 && j->end - j->scan >= SPLIT_MIN_BYTES) {
        int at_rst;
        const uint8_t *start = split_point(j, &at_rst);
        if (start) {
            spec.j = j;
            spec.L = L;
            spec.start = start;
            spec.at_rst = at_rst;
            spec.start_pos = 8 * data_bytes(j->scan, start, j->end);
            /* Records for the MCUs the second half can hold: a block takes 2
               bits at least (a DC code and an end of block), so a frame whose
               header claims far more MCUs than its data could encode (an
               800-byte frame "of" 65535x65535) does not size the records by
               its claim (found by the fuzz target: gigabytes). */
            long by_bits = (long)((j->end - start) * 8 / (2 * L->nb)) + 16;
            spec.cap = L->total + 16 < by_bits ? L->total + 16 : by_bits;
            spec.t_submit = now_us();
#ifdef __linux__
            spec.caller_cpu = sched_getcpu();
#else
            spec.caller_cpu = -1;
#endif
            if (helper_submit(&spec)) {
                s = &spec;
                submitted = 1;
            }
        }
    }

    bits_t b = {j->scan, j->end, 0, 0, 0, 0, 0};
    int pred[MAX_COMPS] = {0, 0, 0}, diff[10];
    int togo = j->restart, next_rst = 0, watching = s != NULL, rc = 0;
    long r = 0, m;
    const char *why = NULL;
    for (m = 0; m < L->total; m++) {
        int mx = (int)(m % L->mcux), my = (int)(m / L->mcux);
        if (j->restart) {
            if (togo == 0) {
                if (take_restart(&b) != next_rst) {
                    why = "restart marker missing, out of sequence or after extraneous bytes";
                    goto corrupt;
                }
                next_rst = (next_rst + 1) & 7;
                togo = j->restart;
                pred[0] = pred[1] = pred[2] = 0;
            }
            togo--;
        }
        if (watching) {
            uint64_t pos = bit_pos(&b);
            if (pos >= s->start_pos) {
                long nrec = __atomic_load_n(&s->nrec, __ATOMIC_ACQUIRE);
                while (r < nrec && s->rec[r].pos < pos)
                    r++;
                if (r < nrec && s->rec[r].pos == pos)
                    break; /* the same walk from here: use its records */
                if (r >= nrec && __atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
                    watching = 0;
            }
        }
        int st = decode_mcu(&b, L, diff);
        if (st != MCU_OK) {
            why = mcu_error[st];
            goto corrupt;
        }
        if (b.fake > b.bits) {
            why = "premature end of data";
            goto corrupt;
        }
        add_mcu(j, L, c, mx, my, diff, pred);
        if (mx == L->mcux - 1 && rows_done(j, c, w, my)) {
            w->stopped = 1;
            goto out;
        }
    }
    if (m == L->total) {
        if (!at_end(&b)) {
            why = "extraneous bytes or no end marker after the scan";
            goto corrupt;
        }
        if (s) {
            /* Walked alone: the helper woke too late to be met (or not at all). */
            double t_end = now_us();
            __atomic_store_n(&s->cancel, 1, __ATOMIC_RELAXED);
            helper_join(s);
            /* Late by at least what was left of its half when the first walk passed
               its start: take it as half the walk. */
            learn_split((t_end - s->t_submit) / 2.0, 1.0, t_end - s->t_submit);
            s = NULL;
        }
        goto out;
    }

    /* Synchronised at MCU m with record r: the rest comes from the records. */
    {
        double t_sync = now_us();
        helper_join(s);
        learn_split(s->t_done - t_sync, (double)(s->start - j->scan) / (double)(j->end - j->scan),
                    t_sync - s->t_submit);
    }
    w->split = 1;
    {
        long need = L->total - m, nrec = __atomic_load_n(&s->nrec, __ATOMIC_ACQUIRE);
        if (nrec - r < need) {
            why = s->why ? s->why : "premature end of data";
            s = NULL;
            goto corrupt;
        }
        for (long q = 0; q < need; q++, m++) {
            const rec_t *rec = &s->rec[r + q];
            int expect = 0;
            if (j->restart && m > 0 && m % j->restart == 0)
                expect = 1 + (int)((m / j->restart - 1) & 7);
            if (j->restart && rec->reset != expect) {
                why = "restart marker missing or out of sequence";
                s = NULL;
                goto corrupt;
            }
            if (rec->reset)
                pred[0] = pred[1] = pred[2] = 0;
            if (rec->overrun) {
                why = "premature end of data";
                s = NULL;
                goto corrupt;
            }
            if (q > 0 && rec->gap) {
                why = "bad Huffman code";
                s = NULL;
                goto corrupt;
            }
            for (int i = 0; i < L->nb; i++)
                diff[i] = rec->diff[i];
            int mx = (int)(m % L->mcux), my = (int)(m / L->mcux);
            add_mcu(j, L, c, mx, my, diff, pred);
            if (mx == L->mcux - 1 && rows_done(j, c, w, my)) {
                w->stopped = 1;
                s = NULL;
                goto out;
            }
        }
        if (!s->rec[r + need - 1].tail_ok) {
            why = "extraneous bytes or no end marker after the scan";
            s = NULL;
            goto corrupt;
        }
        s = NULL;
    }
    goto out;

corrupt:
    res->status = CORRUPT;
    res->why = why;
    rc = -1;
out:
    if (s) {
        __atomic_store_n(&s->cancel, 1, __ATOMIC_RELAXED);
        helper_join(s);
    }
    if (submitted)
        helper_release();
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Python                                                                   */

static int
setup_cells(const jpeg_t *j, const layout_t *L, cells_t *c, int x0, int y0, int x1, int y1, int grid,
            result_t *res)
{
    /* The coarsest component's block footprint in source pixels: every cell
       must hold at least one of its blocks. */
    int fx = 0, fy = 0;
    for (int k = 0; k < j->ncomp; k++) {
        int ax = 8 * j->hmax / j->comp[k].h, ay = 8 * j->vmax / j->comp[k].v;
        if (ax > fx)
            fx = ax;
        if (ay > fy)
            fy = ay;
    }
    c->gx = (x1 - x0) / fx < grid ? (x1 - x0) / fx : grid;
    c->gy = (y1 - y0) / fy < grid ? (y1 - y0) / fy : grid;
    if (c->gx < 4 || c->gy < 4)
        FAIL(UNSUPPORTED, "region too small for a cell grid of DC blocks");
    for (int k = 0; k < j->ncomp; k++) {
        c->sum[k] = (int32_t *)calloc((size_t)c->gx * c->gy, sizeof(int32_t));
        if (!c->sum[k])
            FAIL(CORRUPT, "out of memory");
    }
    for (int k = 0; k < j->ncomp; k++) {
        int nbx = L->mcux * j->comp[k].h, nby = L->mcuy * j->comp[k].v;
        int ax = 8 * j->hmax / j->comp[k].h, ay = 8 * j->vmax / j->comp[k].v;
        c->col[k] = (int16_t *)malloc(sizeof(int16_t) * (size_t)nbx);
        c->row[k] = (int16_t *)malloc(sizeof(int16_t) * (size_t)nby);
        if (!c->col[k] || !c->row[k])
            FAIL(CORRUPT, "out of memory");
        cell_map(c->col[k], c->ncol[k], nbx, ax, x0, x1, c->gx);
        cell_map(c->row[k], c->nrow[k], nby, ay, y0, y1, c->gy);
        for (int i = 0; i < nby; i++) {
            int cy = c->row[k][i];
            if (cy >= 0) {
                int mrow = i / j->comp[k].v;
                if (mrow > c->band_end[cy])
                    c->band_end[cy] = mrow;
            }
        }
    }
    return 0;
}

static void
free_cells(cells_t *c)
{
    for (int k = 0; k < MAX_COMPS; k++) {
        free(c->col[k]);
        free(c->row[k]);
        free(c->sum[k]);
    }
}

#ifndef DCSIG_NO_PYTHON
static long n_calls, n_split, n_stopped;

PyDoc_STRVAR(stats_doc, "stats()\n--\n\nCounters since import; see native_dcsig.pyi.");

static PyObject *
stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:l,s:l,s:l}", "calls", __atomic_load_n(&n_calls, __ATOMIC_RELAXED), "split",
                         __atomic_load_n(&n_split, __ATOMIC_RELAXED), "stopped",
                         __atomic_load_n(&n_stopped, __ATOMIC_RELAXED));
}

/* The stop function from Python: called on the walk's own thread with the GIL
   released, so it takes the GIL for the call. An exception ends the walk and is
   raised by cell_means. */
typedef struct {
    PyObject *fn;
    PyObject *type, *value, *tb;
} py_stop_t;

static int
py_stop(void *ctx, const float *out, int rows, int gx)
{
    py_stop_t *ps = (py_stop_t *)ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int answer = 1;
    PyObject *view = PyMemoryView_FromMemory((char *)out, (Py_ssize_t)rows * gx * 3 * (Py_ssize_t)sizeof(float),
                                             PyBUF_READ);
    PyObject *r = view ? PyObject_CallFunction(ps->fn, "Oii", view, rows, gx) : NULL;
    if (r) {
        answer = PyObject_IsTrue(r);
        Py_DECREF(r);
    }
    if (answer < 0 || PyErr_Occurred()) {
        answer = 1;
        PyErr_Fetch(&ps->type, &ps->value, &ps->tb);
    }
    if (view) {
        /* The memory is the walk's: no view of it may outlive the call. */
        PyObject *rel = PyObject_CallMethod(view, "release", NULL);
        Py_XDECREF(rel);
        Py_DECREF(view);
        if (PyErr_Occurred()) {
            answer = 1;
            if (ps->type)
                PyErr_Clear();
            else
                PyErr_Fetch(&ps->type, &ps->value, &ps->tb);
        }
    }
    PyGILState_Release(g);
    return answer;
}

PyDoc_STRVAR(cell_means_doc,
"cell_means(data, box, grid=16, stop=None, stop_rows=2, threads=2)\n--\n\n"
"RGB means of a grid of cells over ``box`` of a JPEG frame, from its DC\n"
"coefficients; see native_dcsig.pyi.");

static PyObject *
cell_means(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"data", "box", "grid", "stop", "stop_rows", "threads", NULL};
    Py_buffer data;
    int x0, y0, x1, y1, grid = 16;
    PyObject *stop = Py_None;
    int stop_rows = 2;
    int threads = 2;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*(iiii)|iOii:cell_means", kwlist, &data, &x0, &y0, &x1, &y1,
                                     &grid, &stop, &stop_rows, &threads))
        return NULL;
    PyObject *out = NULL;
    cells_t *c = NULL;
    jpeg_t *j = NULL;
    float *sig = NULL;
    result_t res = {OK, NULL};
    py_stop_t ps = {NULL, NULL, NULL, NULL};

    if (grid < 4 || grid > MAX_GRID) {
        PyErr_Format(PyExc_ValueError, "grid must be 4..%d", MAX_GRID);
        goto done;
    }
    if (stop != Py_None && !PyCallable_Check(stop)) {
        PyErr_SetString(PyExc_TypeError, "stop must be callable or None");
        goto done;
    }
    j = (jpeg_t *)calloc(1, sizeof *j);
    c = (cells_t *)calloc(1, sizeof *c);
    if (!j || !c) {
        PyErr_NoMemory();
        goto done;
    }
    if (parse_headers((const uint8_t *)data.buf, (size_t)data.len, j, &res))
        goto failed;
    if (x0 < 0 || y0 < 0 || x1 > j->width || y1 > j->height || x1 <= x0 || y1 <= y0) {
        PyErr_Format(PyExc_ValueError, "box (%d, %d, %d, %d) is not inside the %dx%d frame", x0, y0, x1, y1,
                     j->width, j->height);
        goto done;
    }
    layout_t L;
    if (make_layout(j, &L, &res) || setup_cells(j, &L, c, x0, y0, x1, y1, grid, &res))
        goto failed;
    size_t n = (size_t)c->gx * c->gy * 3;
    sig = (float *)calloc(n, sizeof(float));
    if (!sig) {
        PyErr_NoMemory();
        goto done;
    }
    walk_t w;
    memset(&w, 0, sizeof w);
    w.out = sig;
    if (stop != Py_None) {
        ps.fn = stop;
        w.stop = py_stop;
        w.stop_ctx = &ps;
        w.stop_rows = stop_rows;
    }
    w.threads = threads;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = walk(j, &L, c, &w, &res);
    Py_END_ALLOW_THREADS
    __atomic_add_fetch(&n_calls, 1, __ATOMIC_RELAXED);
    if (w.split)
        __atomic_add_fetch(&n_split, 1, __ATOMIC_RELAXED);
    if (w.stopped)
        __atomic_add_fetch(&n_stopped, 1, __ATOMIC_RELAXED);
    if (ps.type) {
        /* The stop function raised: its exception, as it was. */
        PyErr_Restore(ps.type, ps.value, ps.tb);
        goto done;
    }
    if (rc)
        goto failed;
    if (w.stopped) {
        out = Py_None;
        Py_INCREF(out);
        goto done;
    }
    {
        /* float32 (gy, gx, 3) through numpy's frombuffer: no numpy C API needed. */
        PyObject *np = PyImport_ImportModule("numpy");
        if (!np)
            goto done;
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)sig, (Py_ssize_t)(n * sizeof(float)));
        PyObject *arr = bytes ? PyObject_CallMethod(np, "frombuffer", "Os", bytes, "<f4") : NULL;
        Py_XDECREF(bytes);
        if (arr) {
            PyObject *shaped = PyObject_CallMethod(arr, "reshape", "(iii)", c->gy, c->gx, 3);
            Py_DECREF(arr);
            if (shaped) {
                out = PyObject_CallMethod(shaped, "copy", NULL);
                Py_DECREF(shaped);
            }
        }
        Py_DECREF(np);
    }
    goto done;

failed:
    PyErr_SetString(res.status == UNSUPPORTED ? PyExc_NotImplementedError : PyExc_ValueError,
                    res.why ? res.why : "bad JPEG");
done:
    if (c)
        free_cells(c);
    free(c);
    if (j)
        for (int i = 0; i < j->nowned; i++)
            free(j->owned[i]);
    free(j);
    free(sig);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"cell_means", (PyCFunction)(void (*)(void))cell_means, METH_VARARGS | METH_KEYWORDS, cell_means_doc},
    {"stats", stats, METH_NOARGS, stats_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc, "Cell means of a JPEG frame from its DC coefficients, without decoding it.");

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "native_dcsig", module_doc, 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_native_dcsig(void)
{
    return PyModuleDef_Init(&moduledef);
}
#endif /* DCSIG_NO_PYTHON */
