/* Row-lane primitives of the Quadrature-TreeSHAP walks of orders 1 and 2
 * (_quadrature.pyx).
 *
 * The walk carries SK_RL rows at once; every buffer is laid out [point][row], so one
 * quadrature point of all SK_RL rows is one vector of SK_RL doubles. With GCC / Clang
 * the vectors are the compiler's generic vector extension (four doubles: one AVX
 * register where the module is compiled for AVX2, two SSE2 registers otherwise); other
 * compilers get the same arithmetic as plain loops. Buffers need no alignment.
 */
#ifndef SKLEARN_SHAPLEY_LANES_H
#define SKLEARN_SHAPLEY_LANES_H

#include <stddef.h>

#define SK_RL 4

/* 1 where this module was compiled for AVX2 + FMA. */
static inline int sk_compiled_avx2_fma(void)
{
#if defined(__AVX2__) && defined(__FMA__)
    return 1;
#else
    return 0;
#endif
}

/* Ask for the cache line of p ahead of a write (the scattered pair cells); nothing
 * where the compiler has no such builtin. */
#if defined(__GNUC__) || defined(__clang__)
#define sk_prefetch_w(p) __builtin_prefetch((p), 1, 3)
#else
#define sk_prefetch_w(p) ((void)(p))
#endif

#if defined(__GNUC__) || defined(__clang__)
typedef double sk_v __attribute__((vector_size(SK_RL * sizeof(double)), aligned(8),
                                   may_alias));
#define SK_LOAD(p) (*(const sk_v *)(p))
#define SK_STORE(p, v) (*(sk_v *)(p) = (v))

/* An edge for the rows: its indicators o = op ind, where for a first child ind is
 * bit k of goes_left for row k (1: the row goes left), kept in g for the second
 * child, whose ind is 1 - g; and the coefficients of its factor a om_q + b t_q:
 * a = op z + (1 - op) r, b = op o + (1 - op) r. All are built in vector registers,
 * so that the loops reading a and b (and the sibling reading g) load what was stored
 * as a vector: four scalar stores read back as one vector stall the load
 * (store-to-load forwarding fails). */
static inline void sk_edge(double *o, double *a, double *b, double *g, const double *op,
                           double z, double r, int first, long long goes_left)
{
    _Static_assert(SK_RL == 4, "sk_edge spells out four row bits");
    typedef long long sk_iv __attribute__((vector_size(SK_RL * sizeof(long long))));
    const sk_iv bits = {1, 2, 4, 8};
    const sk_v one = {1.0, 1.0, 1.0, 1.0};
    const sk_v OP = SK_LOAD(op), NOP = 1.0 - OP;
    sk_v O;
    if (first) {
        sk_iv set = ((sk_iv){0} + goes_left) & bits;
        O = (sk_v)((set != 0) & (sk_iv)one); /* 1.0 where the bit is set, else 0.0 */
        SK_STORE(g, O);
    } else {
        O = 1.0 - SK_LOAD(g);
    }
    O = OP * O;
    SK_STORE(o, O);
    SK_STORE(a, OP * z + NOP * r);
    SK_STORE(b, OP * O + NOP * r);
}

/* Pd = Pp * the factor of an edge, per row: (a om_q + b t_q) * (op ip_q + 1 - op),
 * with a, b, op one value per row. */
static inline void sk_descend(double *Pd, const double *Pp, const double *a,
                              const double *b, const double *op, const double *om,
                              const double *tq, const double *ip, ptrdiff_t Q)
{
    const sk_v A = SK_LOAD(a), B = SK_LOAD(b), OP = SK_LOAD(op);
    const sk_v NOP = 1.0 - OP;
    for (ptrdiff_t q = 0; q < Q; q++) {
        sk_v f = (A * om[q] + B * tq[q]) * (OP * ip[q] + NOP);
        SK_STORE(Pd + q * SK_RL, SK_LOAD(Pp + q * SK_RL) * f);
    }
}

/* sk_descend for an edge on a feature not seen higher on the path (op = 1, ip = 1):
 * Pd = Pp * (a om_q + b t_q). */
static inline void sk_descend_new(double *Pd, const double *Pp, const double *a,
                                  const double *b, const double *om, const double *tq,
                                  ptrdiff_t Q)
{
    const sk_v A = SK_LOAD(a), B = SK_LOAD(b);
    for (ptrdiff_t q = 0; q < Q; q++)
        SK_STORE(Pd + q * SK_RL, SK_LOAD(Pp + q * SK_RL) * (A * om[q] + B * tq[q]));
}

/* s1 = sum_q H[q] wd1[q], s0 = sum_q H[q] wd0[q] per row. The even and the odd
 * points go to separate sums (added at the end) so that two chains of dependent
 * additions run at once: the loop is bound by the latency of the addition.
 * fold 1 also copies H to Hp, fold 2 adds it to Hp (an internal node's H folded
 * into its parent's in the same pass). */
#define SK_DOT2_STEP(q, X1, X0)                                                      \
    do {                                                                            \
        sk_v h_ = SK_LOAD(H + (q) * SK_RL);                                         \
        X1 += h_ * wd1[q];                                                          \
        X0 += h_ * wd0[q];                                                          \
        if (fold == 1) SK_STORE(Hp + (q) * SK_RL, h_);                              \
        if (fold == 2) SK_STORE(Hp + (q) * SK_RL, SK_LOAD(Hp + (q) * SK_RL) + h_);  \
    } while (0)

static inline __attribute__((always_inline)) void
sk_dot2_impl(double *Hp, double *s1, double *s0, const double *H, const double *wd1,
             const double *wd0, ptrdiff_t Q, const int fold)
{
    sk_v x1 = {0.0}, x0 = {0.0}, y1 = {0.0}, y0 = {0.0};
    ptrdiff_t q = 0;
    for (; q + 1 < Q; q += 2) {
        SK_DOT2_STEP(q, x1, x0);
        SK_DOT2_STEP(q + 1, y1, y0);
    }
    if (q < Q) SK_DOT2_STEP(q, x1, x0);
    SK_STORE(s1, x1 + y1);
    SK_STORE(s0, x0 + y0);
}
#undef SK_DOT2_STEP

static inline void sk_dot2(double *s1, double *s0, const double *H, const double *wd1,
                           const double *wd0, ptrdiff_t Q)
{
    sk_dot2_impl(NULL, s1, s0, H, wd1, wd0, Q, 0);
}

/* sk_dot2, and H copied to Hp (first) or added to it */
static inline void sk_dot2_fold(double *Hp, double *s1, double *s0, const double *H,
                                const double *wd1, const double *wd0, int first,
                                ptrdiff_t Q)
{
    if (first)
        sk_dot2_impl(Hp, s1, s0, H, wd1, wd0, Q, 1);
    else
        sk_dot2_impl(Hp, s1, s0, H, wd1, wd0, Q, 2);
}

/* A leaf of a one-output tree in one pass, without storing its P: per point,
 * p = Pp * the factor of its edge (as sk_descend, or sk_descend_new where ip is NULL),
 * s1 += p wd1, s0 += p wd0 (even and odd points in separate sums, as sk_dot2), and
 * H = v p where first (the parent's first child), else H += v p. */
#define SK_LEAF_STEP(q, X1, X0)                                                      \
    do {                                                                            \
        sk_v f_ = A * om[q] + B * tq[q];                                            \
        if (has_ip) f_ = f_ * (OP * ip[q] + NOP);                                   \
        sk_v p_ = SK_LOAD(Pp + (q) * SK_RL) * f_;                                   \
        X1 += p_ * wd1[q];                                                          \
        X0 += p_ * wd0[q];                                                          \
        if (first) SK_STORE(H + (q) * SK_RL, p_ * v);                               \
        else SK_STORE(H + (q) * SK_RL, SK_LOAD(H + (q) * SK_RL) + p_ * v);          \
    } while (0)

static inline __attribute__((always_inline)) void
sk_leaf_impl(double *H, double *s1, double *s0, const double *Pp, const double *a,
             const double *b, const double *op, const double *om, const double *tq,
             const double *ip, const double *wd1, const double *wd0, double v,
             ptrdiff_t Q, const int has_ip, const int first)
{
    const sk_v A = SK_LOAD(a), B = SK_LOAD(b);
    sk_v OP = {0.0}, NOP = {0.0};
    sk_v x1 = {0.0}, x0 = {0.0}, y1 = {0.0}, y0 = {0.0};
    ptrdiff_t q = 0;
    if (has_ip) {
        OP = SK_LOAD(op);
        NOP = 1.0 - OP;
    }
    for (; q + 1 < Q; q += 2) {
        SK_LEAF_STEP(q, x1, x0);
        SK_LEAF_STEP(q + 1, y1, y0);
    }
    if (q < Q) SK_LEAF_STEP(q, x1, x0);
    SK_STORE(s1, x1 + y1);
    SK_STORE(s0, x0 + y0);
}
#undef SK_LEAF_STEP

static inline void sk_leaf(double *H, double *s1, double *s0, const double *Pp,
                           const double *a, const double *b, const double *op,
                           const double *om, const double *tq, const double *ip,
                           const double *wd1, const double *wd0, double v, int first,
                           ptrdiff_t Q)
{
    if (ip && first)
        sk_leaf_impl(H, s1, s0, Pp, a, b, op, om, tq, ip, wd1, wd0, v, Q, 1, 1);
    else if (ip)
        sk_leaf_impl(H, s1, s0, Pp, a, b, op, om, tq, ip, wd1, wd0, v, Q, 1, 0);
    else if (first)
        sk_leaf_impl(H, s1, s0, Pp, a, b, op, om, tq, ip, wd1, wd0, v, Q, 0, 1);
    else
        sk_leaf_impl(H, s1, s0, Pp, a, b, op, om, tq, ip, wd1, wd0, v, Q, 0, 0);
}

/* dst = src * v (n doubles, n a multiple of SK_RL) */
static inline void sk_scale(double *dst, const double *src, double v, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += SK_RL)
        SK_STORE(dst + i, SK_LOAD(src + i) * v);
}

/* dst += src * v */
static inline void sk_axpy(double *dst, const double *src, double v, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += SK_RL)
        SK_STORE(dst + i, SK_LOAD(dst + i) + SK_LOAD(src + i) * v);
}

/* dst += src */
static inline void sk_add(double *dst, const double *src, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += SK_RL)
        SK_STORE(dst + i, SK_LOAD(dst + i) + SK_LOAD(src + i));
}

/* dst = src */
static inline void sk_copy(double *dst, const double *src, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += SK_RL)
        SK_STORE(dst + i, SK_LOAD(src + i));
}

/* Pairs: HG[q] = H[q] (c1 wd1[q] + c0 wd0[q]) with c1, c0 one value per row;
 * s = sum_q HG[q], sn = sum_q HG[q] neg[q] per row. */
static inline void sk_pair_weights(double *HG, double *s, double *sn, const double *H,
                                   const double *c1, const double *c0,
                                   const double *wd1, const double *wd0,
                                   const double *neg, ptrdiff_t Q)
{
    const sk_v C1 = SK_LOAD(c1), C0 = SK_LOAD(c0);
    sk_v x = {0.0}, xn = {0.0};
    for (ptrdiff_t q = 0; q < Q; q++) {
        sk_v hg = SK_LOAD(H + q * SK_RL) * (C1 * wd1[q] + C0 * wd0[q]);
        SK_STORE(HG + q * SK_RL, hg);
        x += hg;
        xn += hg * neg[q];
    }
    SK_STORE(s, x);
    SK_STORE(sn, xn);
}

/* s = sum_q H[q] a[q] per row, the points in four separate sums (point q in sum
 * q mod 4), so that the additions are not one chain: one call per pair of features
 * makes this the inner loop of the pairs. */
static inline void sk_dot1(double *s, const double *H, const double *a, ptrdiff_t Q)
{
    sk_v x0 = {0.0}, x1 = {0.0}, x2 = {0.0}, x3 = {0.0};
    ptrdiff_t q = 0;
    for (; q + 3 < Q; q += 4) {
        x0 += SK_LOAD(H + q * SK_RL) * a[q];
        x1 += SK_LOAD(H + (q + 1) * SK_RL) * a[q + 1];
        x2 += SK_LOAD(H + (q + 2) * SK_RL) * a[q + 2];
        x3 += SK_LOAD(H + (q + 3) * SK_RL) * a[q + 3];
    }
    if (q < Q) {
        x0 += SK_LOAD(H + q * SK_RL) * a[q];
        if (q + 1 < Q) {
            x1 += SK_LOAD(H + (q + 1) * SK_RL) * a[q + 1];
            if (q + 2 < Q) x2 += SK_LOAD(H + (q + 2) * SK_RL) * a[q + 2];
        }
    }
    SK_STORE(s, (x0 + x1) + (x2 + x3));
}

#else /* portable loops with the same arithmetic */

static inline void sk_edge(double *o, double *a, double *b, double *g, const double *op,
                           double z, double r, int first, long long goes_left)
{
    for (int k = 0; k < SK_RL; k++) {
        if (first) g[k] = (double)((goes_left >> k) & 1);
        o[k] = op[k] * (first ? g[k] : 1.0 - g[k]);
        a[k] = op[k] * z + (1.0 - op[k]) * r;
        b[k] = op[k] * o[k] + (1.0 - op[k]) * r;
    }
}

static inline void sk_descend(double *Pd, const double *Pp, const double *a,
                              const double *b, const double *op, const double *om,
                              const double *tq, const double *ip, ptrdiff_t Q)
{
    for (ptrdiff_t q = 0; q < Q; q++)
        for (int r = 0; r < SK_RL; r++)
            Pd[q * SK_RL + r] = Pp[q * SK_RL + r] *
                ((a[r] * om[q] + b[r] * tq[q]) * (op[r] * ip[q] + (1.0 - op[r])));
}

static inline void sk_descend_new(double *Pd, const double *Pp, const double *a,
                                  const double *b, const double *om, const double *tq,
                                  ptrdiff_t Q)
{
    for (ptrdiff_t q = 0; q < Q; q++)
        for (int r = 0; r < SK_RL; r++)
            Pd[q * SK_RL + r] = Pp[q * SK_RL + r] * (a[r] * om[q] + b[r] * tq[q]);
}

static inline void sk_dot2_fold(double *Hp, double *s1, double *s0, const double *H,
                                const double *wd1, const double *wd0, int first,
                                ptrdiff_t Q)
{
    for (int r = 0; r < SK_RL; r++) {
        double x[2] = {0.0, 0.0}, y[2] = {0.0, 0.0};
        for (ptrdiff_t q = 0; q < Q; q++) {
            double h = H[q * SK_RL + r];
            x[q & 1] += h * wd1[q];
            y[q & 1] += h * wd0[q];
            if (Hp) Hp[q * SK_RL + r] = first ? h : Hp[q * SK_RL + r] + h;
        }
        s1[r] = x[0] + x[1];
        s0[r] = y[0] + y[1];
    }
}

static inline void sk_dot2(double *s1, double *s0, const double *H, const double *wd1,
                           const double *wd0, ptrdiff_t Q)
{
    sk_dot2_fold(NULL, s1, s0, H, wd1, wd0, 0, Q);
}

static inline void sk_leaf(double *H, double *s1, double *s0, const double *Pp,
                           const double *a, const double *b, const double *op,
                           const double *om, const double *tq, const double *ip,
                           const double *wd1, const double *wd0, double v, int first,
                           ptrdiff_t Q)
{
    for (int r = 0; r < SK_RL; r++) {
        double x[2] = {0.0, 0.0}, y[2] = {0.0, 0.0};
        for (ptrdiff_t q = 0; q < Q; q++) {
            double f = a[r] * om[q] + b[r] * tq[q];
            if (ip) f = f * (op[r] * ip[q] + (1.0 - op[r]));
            double p = Pp[q * SK_RL + r] * f;
            x[q & 1] += p * wd1[q];
            y[q & 1] += p * wd0[q];
            H[q * SK_RL + r] = first ? p * v : H[q * SK_RL + r] + p * v;
        }
        s1[r] = x[0] + x[1];
        s0[r] = y[0] + y[1];
    }
}

static inline void sk_scale(double *dst, const double *src, double v, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i] * v;
}

static inline void sk_axpy(double *dst, const double *src, double v, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = dst[i] + src[i] * v;
}

static inline void sk_add(double *dst, const double *src, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = dst[i] + src[i];
}

static inline void sk_copy(double *dst, const double *src, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i];
}

static inline void sk_pair_weights(double *HG, double *s, double *sn, const double *H,
                                   const double *c1, const double *c0,
                                   const double *wd1, const double *wd0,
                                   const double *neg, ptrdiff_t Q)
{
    for (int r = 0; r < SK_RL; r++) {
        s[r] = 0.0;
        sn[r] = 0.0;
    }
    for (ptrdiff_t q = 0; q < Q; q++)
        for (int r = 0; r < SK_RL; r++) {
            double hg = H[q * SK_RL + r] * (c1[r] * wd1[q] + c0[r] * wd0[q]);
            HG[q * SK_RL + r] = hg;
            s[r] += hg;
            sn[r] += hg * neg[q];
        }
}

static inline void sk_dot1(double *s, const double *H, const double *a, ptrdiff_t Q)
{
    for (int r = 0; r < SK_RL; r++) {
        double x[4] = {0.0, 0.0, 0.0, 0.0};
        for (ptrdiff_t q = 0; q < Q; q++) x[q & 3] += H[q * SK_RL + r] * a[q];
        s[r] = (x[0] + x[1]) + (x[2] + x[3]);
    }
}

#endif
#endif
