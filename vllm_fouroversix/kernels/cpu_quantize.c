/* 4/6 NVFP4 quantization on CPU (SPEC section 2), bit-exact with nvfp4.py.
 *
 * nvfp4.quantize is the definition; this file runs the same float32 operations
 * in the same order, eight blocks at a time in registers, so the converter is
 * not bound by torch's many small elementwise passes (about 10x faster on one
 * core than nvfp4 on two; tests/test_cpu_quantize.py checks every bit against
 * nvfp4). The only C compiler features used are GCC/Clang vector extensions.
 * Built by cpu_quantize.py with
 * -ffp-contract=off (a fused multiply-add would round differently) and without
 * -ffast-math (every division must stay a true IEEE division).
 *
 * Per row (amax am): enc = M*S/am, dec = 1/enc (0-scale rows: am == 0 or
 * M*S/am not finite). Per block and candidate (expand: map-to-4):
 *   s   = e4m3(min((bmax/M)*enc [*1.5], 448))      round to nearest even
 *   t   = |x| * ((1/(dec*float(s))) * 4)            0 when s == 0
 *   code: E2M1 rounding of t/4 (ties to even, saturating at 6)
 *   err = sum_{j<8} (e_j + e_{j+8}) left to right, e = d*d (mse) or |d| (mae),
 *         or max |d| (abs_max), d = ((E2M1[code]*float(s))*am)/1536 - |x|
 * map-to-4 wins only if err4 < err6. Sign bit: x < 0 and s != 0.
 */
#include <stdint.h>
#include <string.h>

enum { RULE_MSE = 0, RULE_MAE = 1, RULE_ABS_MAX = 2, RULE_STATIC_6 = 3, RULE_STATIC_4 = 4 };
enum { DT_F32 = 0, DT_BF16 = 1 };
enum { STAT_ERR2 = 0, STAT_W2 = 1, STAT_NONZERO = 2, STAT_MAPPED4 = 3 };

#define FLT_MAX_ 3.4028234663852886e38f

/* Eight blocks at a time, one block per lane: vector j holds element j of
 * each block. So every per-block step (block max, scale rounding, the two
 * divisions) is one vector operation, and the SPEC's error sum
 * sum_{j<8} (e_j + e_{j+8}) is a chain of plain vector adds in its exact
 * order. GCC vector extensions compile to AVX2 where -march=native has it,
 * else to SSE pairs. */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
#define LANES 8

static inline v8f as_f(v8i x) { v8f r; memcpy(&r, &x, sizeof r); return r; }
static inline v8i as_i(v8f x) { v8i r; memcpy(&r, &x, sizeof r); return r; }
static inline v8f sel(v8i m, v8f a, v8f b) { return as_f((as_i(a) & m) | (as_i(b) & ~m)); }
static inline v8i seli(v8i m, v8i a, v8i b) { return (a & m) | (b & ~m); }
static inline v8f vabs(v8f x) { return as_f(as_i(x) & 0x7FFFFFFF); }
static inline v8f vmax(v8f x, v8f y) { return sel(x > y, x, y); }
static inline v8f vsplat(float v) { return (v8f){v, v, v, v, v, v, v, v}; }

/* v in [0, 448] rounded to E4M3 (nearest even): the rounded value, and its byte. */
static inline v8f e4m3_round(v8f v, v8i *byte) {
    /* Below 2^-6 the steps are 2^-9: round v*512 to an integer by adding and
     * subtracting 1.5*2^23 (the FPU rounds to nearest even; v*512 < 8). */
    v8i sub = v < 0.015625f;
    v8f m = (v * 512.0f + 12582912.0f) - 12582912.0f;
    v8i sub_byte = __builtin_convertvector(m, v8i);
    v8f sub_val = m * 0.001953125f;
    /* Normal: round the 23-bit mantissa to 3 bits, ties to even. */
    v8i b = as_i(v);
    b = (b + 0x7FFFF + ((b >> 20) & 1)) & ~0xFFFFF;
    v8i norm_byte = (((b >> 23) - 120) << 3) | ((b >> 20) & 7);
    *byte = seli(sub, sub_byte, norm_byte);
    return sel(sub, sub_val, as_f(b));
}

typedef struct {
    v8i s;     /* E4M3 scale bytes */
    v8f sf;    /* their values */
    v8f q[16]; /* E2M1 magnitudes 0, 0.5, ..., 6 */
} cand_t;

/* One scaling candidate of SPEC section 2 for 8 blocks.
 *
 * E2M1 rounding of t = 4|y| by the FPU: adding 2^24, 2^25 or 2^26 leaves t
 * rounded to a multiple of 2, 4 or 8 (the grid steps 0.5, 1, 2 of y on
 * [0, 2), [2, 4), [4, 6]), to nearest even, which is the SPEC's tie rule: the
 * even multiple is the even code. t >= 24 saturates to 6. */
static inline void candidate(const v8f a[16], v8f bmax, float M, v8f enc, v8f dec, int expand, cand_t *c) {
    v8f s_hp = (bmax / M) * enc;
    if (expand) s_hp = s_hp * 1.5f;
    s_hp = sel(s_hp > 448.0f, vsplat(448.0f), s_hp);
    c->sf = e4m3_round(s_hp, &c->s);
    v8f inv = sel(c->sf != 0.0f, 1.0f / (dec * c->sf), vsplat(0.0f));
    v8f i4 = inv * 4.0f;
    for (int j = 0; j < 16; j++) {
        v8f t = a[j] * i4;
        t = sel(t > 24.0f, vsplat(24.0f), t);
        /* 2^24, doubled for t >= 8 and again for t >= 16 (masks are -1) */
        v8f magic = as_f(0x4B800000 - ((t >= 8.0f) + (t >= 16.0f)) * (1 << 23));
        c->q[j] = ((t + magic) - magic) * 0.25f;
    }
}

/* E2M1 code of a magnitude q in {0, 0.5, 1, 1.5, 2, 3, 4, 6}: for q >= 1 the
 * float's exponent and top mantissa bit are the code (plus a bias). */
static inline v8i e2m1_code(v8f q) {
    v8i c = (as_i(q) >> 22) - 252;
    c = seli(c > 0, c, (v8i){0});
    return c - (q == 0.5f);
}

/* The selection error of SPEC section 2; deq = ((E2M1 * scale) * amax) / 1536. */
static inline v8f block_error(const v8f a[16], const cand_t *c, v8f am, int rule) {
    v8f e[16];
    for (int j = 0; j < 16; j++) {
        v8f d = ((c->q[j] * c->sf) * am) / 1536.0f - a[j];
        e[j] = rule == RULE_MSE ? d * d : vabs(d);
    }
    if (rule == RULE_ABS_MAX) {
        v8f m = e[0];
        for (int j = 1; j < 16; j++) m = vmax(m, e[j]);
        return m;
    }
    v8f acc = e[0] + e[8];
    for (int j = 1; j < 8; j++) acc += e[j] + e[j + 8];
    return acc;
}

/* 8x8 transpose: r[l][j] -> out[j][l]. */
static inline void transpose8(const v8f r[8], v8f out[8]) {
    v8f t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 2; i++) {
        for (int h = 0; h < 2; h++) {
            u[4 * i + 2 * h] = __builtin_shufflevector(t[4 * i + h], t[4 * i + 2 + h], 0, 1, 8, 9, 4, 5, 12, 13);
            u[4 * i + 2 * h + 1] = __builtin_shufflevector(t[4 * i + h], t[4 * i + 2 + h], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    }
    for (int j = 0; j < 4; j++) {
        out[j] = __builtin_shufflevector(u[j], u[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
        out[j + 4] = __builtin_shufflevector(u[j], u[4 + j], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

typedef uint16_t v8h __attribute__((vector_size(16)));
typedef uint8_t v8b __attribute__((vector_size(8)));
typedef uint8_t v32b __attribute__((vector_size(32)));

/* The low byte of each lane (values < 256) to 8 bytes at dst. */
static inline void store_bytes(uint8_t *dst, v8i v) {
    v32b b;
    memcpy(&b, &v, sizeof b);
    v8b out = __builtin_shufflevector(b, b, 0, 4, 8, 12, 16, 20, 24, 28);
    memcpy(dst, &out, sizeof out);
}

/* 8 consecutive blocks -> x[j] = element j of each block (lane = block). */
static inline void load_blocks(const void *src, int dt, v8f x[16]) {
    v8f r[2][8];
    for (int l = 0; l < 8; l++) {
        for (int h = 0; h < 2; h++) {
            if (dt == DT_BF16) {
                v8h raw;
                memcpy(&raw, (const uint16_t *)src + l * 16 + h * 8, sizeof raw);
                r[h][l] = as_f(__builtin_convertvector(raw, v8i) << 16);
            } else {
                memcpy(&r[h][l], (const float *)src + l * 16 + h * 8, sizeof(v8f));
            }
        }
    }
    transpose8(r[0], x);
    transpose8(r[1], x + 8);
}

typedef struct {
    int dt;
    float M, MS;
    int rule;
} params_t;

/* Quantizes 8 consecutive blocks at src (amax am per block): 64 code bytes to
 * data, 8 scale bytes, 8 map-to-4 flags (4/6 rules). Returns 1 on NaN/Inf. */
static inline __attribute__((always_inline)) int quantize8(const void *src, v8f am, int dt, float M, float MS,
                                                           int rule, uint8_t *data, uint8_t *scales,
                                                           uint8_t *pick4, v8f *err2, v8f *w2, v8i *nonzero,
                                                           v8i *mapped4) {
    const int fos = rule == RULE_MSE || rule == RULE_MAE || rule == RULE_ABS_MAX;
    /* Per-row constants: enc = MS/am, dec = 1/enc; rows with am == 0 or MS/am
     * not finite quantize to zero (nvfp4: enc = MS / (zero ? 1 : am), then 0). */
    v8f q_enc = MS / am;
    v8i zero = (am == 0.0f) | ~(vabs(q_enc) <= FLT_MAX_);
    v8f enc0 = sel(zero, vsplat(MS), q_enc);
    v8f dec = 1.0f / enc0;
    v8f enc = sel(zero, vsplat(0.0f), enc0);

    v8f x[16], a[16];
    v8i bad = {0}, neg[16];
    v8f bmax = vsplat(0.0f);
    load_blocks(src, dt, x);
    for (int j = 0; j < 16; j++) {
        a[j] = vabs(x[j]);
        bad |= ~(a[j] <= FLT_MAX_); /* NaN or Inf */
        neg[j] = x[j] < 0.0f;
        bmax = vmax(bmax, a[j]);
    }
    int any_bad = 0;
    for (int l = 0; l < LANES; l++) any_bad |= bad[l];
    if (any_bad) return 1;

    cand_t c6, c4;
    candidate(a, bmax, M, enc, dec, 0, &c6);
    v8i p4 = {0};
    if (fos) {
        candidate(a, bmax, M, enc, dec, 1, &c4);
        p4 = block_error(a, &c4, am, rule) < block_error(a, &c6, am, rule); /* ties: map-to-6 */
    } else {
        c4 = c6; /* static rules: one candidate (p4 stays 0) */
    }
    const v8i s = seli(p4, c4.s, c6.s);
    const v8i snz = s != 0;
    const v8i sign = snz & 8; /* x < 0 gets bit 3, except in blocks whose scale is 0 */
    v8i code[16];
    for (int j = 0; j < 16; j++) code[j] = e2m1_code(sel(p4, c4.q[j], c6.q[j])) | (neg[j] & sign);
    /* Byte i of block l is code[2i] | code[2i+1] << 4: gather bytes 0-3 and 4-7
     * of every block into two words, then interleave the words block by block. */
    v8u lo = {0}, hi = {0};
    for (int i = 0; i < 4; i++) {
        lo |= (v8u)(code[2 * i] | (code[2 * i + 1] << 4)) << (8 * i);
        hi |= (v8u)(code[8 + 2 * i] | (code[8 + 2 * i + 1] << 4)) << (8 * i);
    }
    v8u out0 = __builtin_shufflevector(lo, hi, 0, 8, 1, 9, 2, 10, 3, 11);
    v8u out1 = __builtin_shufflevector(lo, hi, 4, 12, 5, 13, 6, 14, 7, 15);
    memcpy(data, &out0, sizeof out0);
    memcpy(data + 32, &out1, sizeof out1);
    store_bytes(scales, s);
    if (fos) store_bytes(pick4, p4 & 1);
    if (err2) {
        /* nvfp4.dequantize: (+-E2M1 * scale) * global scale, g = am / MS */
        const v8f sf = sel(p4, c4.sf, c6.sf);
        const v8f g = am / MS;
        for (int j = 0; j < 16; j++) {
            v8f vq = sel(p4, c4.q[j], c6.q[j]) * sf;
            vq = as_f(as_i(vq) ^ (neg[j] & snz & (int32_t)0x80000000u));
            v8f d = vq * g - x[j];
            *err2 += d * d;
            *w2 += x[j] * x[j];
        }
        *nonzero -= snz;
        *mapped4 -= p4 & snz;
    }
    return 0;
}

static int run_rule(const void *x, int dt, int64_t R, int64_t K, const float *am_in, int per_row, int rule,
                    float M, float MS, uint8_t *data, uint8_t *scales, uint8_t *pick4, double *stats) {
    const int64_t nb = K / 16, nblocks = R * nb;
    const int64_t esz = dt == DT_BF16 ? 2 : 4;
    v8f err2 = {0}, w2 = {0};
    v8f *e2p = stats ? &err2 : NULL, *w2p = stats ? &w2 : NULL;
    v8i nonzero = {0}, mapped4 = {0};
    double e2 = 0.0, n2 = 0.0;
    uint8_t dummy[8];
    for (int64_t g0 = 0; g0 < nblocks; g0 += LANES) {
        const int n = nblocks - g0 < LANES ? (int)(nblocks - g0) : LANES;
        /* amax of each lane's row */
        v8f am;
        if (!per_row) {
            am = vsplat(am_in[0]);
        } else {
            int64_t row = g0 / nb, in_row = g0 - row * nb;
            for (int l = 0; l < LANES; l++) {
                am[l] = l < n ? am_in[row] : 1.0f;
                if (++in_row == nb) { in_row = 0; row++; }
            }
        }
        uint8_t *pk = pick4 ? pick4 + g0 : dummy;
        int bad;
        if (n == LANES) {
            const char *src = (const char *)x + g0 * 16 * esz;
            switch (rule) { /* constant rule: one specialised copy each */
            case RULE_MSE: bad = quantize8(src, am, dt, M, MS, RULE_MSE, data + g0 * 8, scales + g0, pk, e2p, w2p, &nonzero, &mapped4); break;
            case RULE_MAE: bad = quantize8(src, am, dt, M, MS, RULE_MAE, data + g0 * 8, scales + g0, pk, e2p, w2p, &nonzero, &mapped4); break;
            case RULE_ABS_MAX: bad = quantize8(src, am, dt, M, MS, RULE_ABS_MAX, data + g0 * 8, scales + g0, pk, e2p, w2p, &nonzero, &mapped4); break;
            default: bad = quantize8(src, am, dt, M, MS, RULE_STATIC_6, data + g0 * 8, scales + g0, pk, e2p, w2p, &nonzero, &mapped4); break;
            }
        } else { /* the last, partial group: through zero-padded buffers */
            float in[LANES * 16] = {0};
            uint8_t d[64], sc[8], p[8];
            memcpy(in, (const char *)x + g0 * 16 * esz, (size_t)(n * 16 * esz));
            v8i nz = {0}, m4 = {0};
            bad = quantize8(in, am, dt, M, MS, rule, d, sc, p, e2p, w2p, &nz, &m4);
            for (int l = 0; l < n; l++) {
                nonzero[l] += nz[l];
                mapped4[l] += m4[l];
            }
            memcpy(data + g0 * 8, d, (size_t)(8 * n));
            memcpy(scales + g0, sc, (size_t)n);
            if (pick4) memcpy(pick4 + g0, p, (size_t)n);
        }
        if (bad) return 1;
        if (stats && ((g0 / LANES) & 63) == 63) { /* move float partial sums to double now and then */
            for (int l = 0; l < LANES; l++) { e2 += err2[l]; n2 += w2[l]; }
            err2 = (v8f){0};
            w2 = (v8f){0};
        }
    }
    if (stats) {
        double nz = 0, m4 = 0;
        for (int l = 0; l < LANES; l++) {
            e2 += err2[l];
            n2 += w2[l];
            nz += nonzero[l];
            m4 += mapped4[l];
        }
        stats[STAT_ERR2] += e2;
        stats[STAT_W2] += n2;
        stats[STAT_NONZERO] += nz;
        stats[STAT_MAPPED4] += m4;
    }
    return 0;
}

static inline v8f load8(const void *x, int dt, int64_t i) {
    v8f v;
    if (dt == DT_BF16) {
        v8h raw;
        memcpy(&raw, (const uint16_t *)x + i, sizeof raw);
        v = as_f(__builtin_convertvector(raw, v8i) << 16);
    } else {
        memcpy(&v, (const float *)x + i, sizeof v);
    }
    return v;
}

static inline float hmax(v8f x) {
    float m = x[0];
    for (int j = 1; j < 8; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* Per-row (or whole-tensor) max |x| of a contiguous [R, K]; returns 1 if x
 * holds NaN or Inf. */
int fos_amax(const void *x, int dt, int64_t R, int64_t K, int per_row, float *out) {
    v8f total = vsplat(0.0f);
    v8i bad = {0};
    for (int64_t r = 0; r < R; r++) {
        v8f m = vsplat(0.0f);
        for (int64_t k = 0; k < K; k += 8) {
            v8f a = vabs(load8(x, dt, r * K + k));
            bad |= ~(a <= FLT_MAX_);
            m = vmax(m, a);
        }
        if (per_row) out[r] = hmax(m);
        else total = vmax(total, m);
    }
    if (!per_row) out[0] = hmax(total);
    int any = 0;
    for (int l = 0; l < LANES; l++) any |= bad[l];
    return any != 0;
}

/* Quantize a contiguous [R, K] input with amax am[R] (per_row) or am[0]:
 * writes data [R, K/2], scales [R, K/16] (bytes), pick4 [R, K/16] (4/6 rules),
 * and adds to stats[4] when not NULL: sum (deq - x)^2, sum x^2, blocks with a
 * non-zero scale, of those mapped to 4 (deq includes the global scale
 * am/(M*S), as nvfp4.dequantize). Returns 1 if x holds NaN or Inf (outputs
 * then undefined), else 0. */
int fos_quantize(const void *x, int dt, int64_t R, int64_t K, const float *am, int per_row, int rule, float M,
                 float MS, uint8_t *data, uint8_t *scales, uint8_t *pick4, double *stats) {
    return run_rule(x, dt, R, K, am, per_row, rule, M, MS, data, scales, pick4, stats);
}
