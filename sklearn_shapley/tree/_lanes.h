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

/* 1 where the CPU runs AVX2 and FMA instructions (the _quadrature_avx2 build). */
static inline int sk_cpu_has_avx2_fma(void)
{
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* 1 where this module was compiled for AVX2 + FMA. */
static inline int sk_compiled_avx2_fma(void)
{
#if defined(__AVX2__) && defined(__FMA__)
    return 1;
#else
    return 0;
#endif
}

#if defined(__GNUC__) || defined(__clang__)
typedef double sk_v __attribute__((vector_size(SK_RL * sizeof(double)), aligned(8),
                                   may_alias));
#define SK_LOAD(p) (*(const sk_v *)(p))
#define SK_STORE(p, v) (*(sk_v *)(p) = (v))

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

/* s1 = sum_q H[q] wd1[q], s0 = sum_q H[q] wd0[q] per row. */
static inline void sk_dot2(double *s1, double *s0, const double *H, const double *wd1,
                           const double *wd0, ptrdiff_t Q)
{
    sk_v x1 = {0.0}, x0 = {0.0};
    for (ptrdiff_t q = 0; q < Q; q++) {
        sk_v h = SK_LOAD(H + q * SK_RL);
        x1 += h * wd1[q];
        x0 += h * wd0[q];
    }
    SK_STORE(s1, x1);
    SK_STORE(s0, x0);
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

/* s = sum_q H[q] a[q] per row. */
static inline void sk_dot1(double *s, const double *H, const double *a, ptrdiff_t Q)
{
    sk_v x = {0.0};
    for (ptrdiff_t q = 0; q < Q; q++)
        x += SK_LOAD(H + q * SK_RL) * a[q];
    SK_STORE(s, x);
}

#else /* portable loops with the same arithmetic */

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

static inline void sk_dot2(double *s1, double *s0, const double *H, const double *wd1,
                           const double *wd0, ptrdiff_t Q)
{
    for (int r = 0; r < SK_RL; r++) {
        s1[r] = 0.0;
        s0[r] = 0.0;
    }
    for (ptrdiff_t q = 0; q < Q; q++)
        for (int r = 0; r < SK_RL; r++) {
            s1[r] += H[q * SK_RL + r] * wd1[q];
            s0[r] += H[q * SK_RL + r] * wd0[q];
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
    for (int r = 0; r < SK_RL; r++) s[r] = 0.0;
    for (ptrdiff_t q = 0; q < Q; q++)
        for (int r = 0; r < SK_RL; r++) s[r] += H[q * SK_RL + r] * a[q];
}

#endif
#endif
