/* pskernels.h: the C ABI of pserver's in-place optimizer update kernels.
 *
 * Every kernel makes one fused pass over n contiguous elements and updates the parameter and the
 * optimizer state in place. Kernels are stateless and thread-safe: concurrent calls on disjoint
 * ranges are fine; the caller serializes calls that touch the same elements.
 *
 * The Java fallback (org.pserver.kernels.JavaKernels) implements exactly the same per-element
 * operations in the same order, and the native build uses -ffp-contract=off, so both paths give
 * bit-identical results for every element type. The formulas below are therefore the contract of
 * both; change them in both places or in neither.
 *
 * \section types Element types and precision
 * - Parameter and gradient have the same element type (psk_type). Optimizer state is float for
 *   PSK_FLOAT32 and double for every other type ("S" below).
 * - Arithmetic is done in "C": float for PSK_FLOAT32, double otherwise. Hyper-parameters arrive as
 *   double; each derived coefficient is computed in double first and then converted to C once per
 *   call (e.g. c1 = (C)(1 - beta1)).
 * - Difference from the Go seed, float32 only: the seed stored float32 but evaluated each
 *   expression in double (its hyper-parameters are double, so C++ promotes) and rounded once per
 *   assignment; here every operation rounds to float, with float coefficients. A float32 result
 *   can therefore differ from the seed's by a few float ulps per step (the seed's own per-step
 *   storage rounding is one ulp). Chosen on purpose: twice the SIMD lanes and no conversions, and
 *   it is what the Java kernels reproduce bit for bit. Float64 and integer types compute in double,
 *   as the seed's formulas read.
 * - Integer parameters: the step s is computed in double and the new value is the exact sum p + s
 *   rounded half to even and saturated to the type's range (see "combine" below). So SGD with lr 1
 *   on integer gradients accumulates exactly. The optimizer state of integer parameters is double.
 *
 * \section prep Gradient preprocessing (every optimizer kernel; not accumulate/assign)
 *   x = (C)g[i]                 uint64 -> double is round-to-nearest-even
 *   if (gclip > 0)   x = x < -(C)gclip ? -(C)gclip : (x > (C)gclip ? (C)gclip : x)   (NaN stays NaN)
 *   if (gscale != 1) x = x * (C)gscale
 * gclip is the element clip (OptimizerConfig.clip_value, 0 = off); gscale is the L2-norm clip factor
 * the caller derived from psk_sum_squares (1 = off). Clipping never writes the gradient buffer.
 *
 * \section combine Writing the step back
 * pc is the parameter as C ((C)p[i]). With the step s (type C):
 * - float types: p[i] = p[i] + s.
 * - 32-bit integer types, all in double, exactly:
 *     s = s < -2^40 ? -2^40 : (s > 2^40 ? 2^40 : s)      (NaN handled first: NaN step keeps p)
 *     f = floor(s); fr = s - f; b = (double)p[i] + f;
 *     up = fr > 0.5 || (fr == 0.5 && b - 2*floor(b*0.5) != 0)
 *     r = b + (up ? 1 : 0), clamped to [TYPE_MIN, TYPE_MAX], stored.
 * - 64-bit integer types: the same rule (NaN keeps p; clamp s to +-2^65; f, fr as above), with
 *   b = p + f computed exactly in 128-bit integers, then r = b + up saturated to the type's range.
 *
 * \section rules Update rules (per element, after prep; m, v, A, Eg, Ed, U are state of type S)
 * psk_sgd: a = (C)lr, b = (C)(lr*decay), mu = (C)momentum
 *   if (momentum == 0)  vel = (-a)*x - b*pc                     (mom may be NULL)
 *   else              { m = (mu*m - a*x) - b*pc; vel = m; }
 *   if (nesterov && momentum != 0)  s = (mu*vel - a*x) - b*pc   (decay in the look-ahead too)
 *   else                            s = vel
 *   Difference from the Go seed: with momentum 0, Nesterov is plain SGD and keeps weight decay.
 * psk_adam: lt = (C)lr_t (bias-corrected by the caller), b1 = (C)beta1, c1 = (C)(1-beta1),
 *   b2 = (C)beta2, c2 = (C)(1-beta2), e = (C)epsilon, d = (C)decay
 *   m = b1*m + c1*x;  v = b2*v + (c2*x)*x;  s = -(lt*(m/sqrt(v + e) + d*pc))
 *   (epsilon inside the square root, decay scaled by lr_t: the seed's rule)
 * psk_adagrad: a = (C)lr, b = (C)(lr*decay), e = (C)epsilon
 *   A = A + x*x;  s = -((a*x)/sqrt(A + e) + b*pc)
 *   (descends; the Go seed's "+" sign bug is fixed)
 * psk_adadelta: r = (C)rho, cr = (C)(1-rho), e = (C)epsilon, a = (C)lr, b = (C)(lr*decay)
 *   Eg = r*Eg + (cr*x)*x;  U = (sqrt(Ed + e)/sqrt(Eg + e))*x;  Ed = r*Ed + (cr*U)*U;
 *   s = -(a*U + b*pc)
 * psk_accumulate: s = (C)alpha * (C)g[i]  (no clipping), then combine: p += alpha*g.
 * psk_assign: dst[i] = src[i], a plain copy of n elements of the type.
 *
 * \section bufs Buffers
 * Pointers must be aligned to their element size; no wider alignment is needed (64-byte aligned
 * buffers are fastest). Parameter, gradient and state ranges must not overlap: the kernels treat
 * them as restrict. n may be 0; then no element is read or written, but the out-parameter of
 * psk_sum_squares (0.0) and psk_all_finite (1) is still set when it is not NULL.
 * Checks, in this order, each returning before anything is touched: a bad type (PSK_EBADTYPE),
 * n < 0 (PSK_EBADLEN), a NULL pointer the call needs when n > 0 (PSK_ENULL).
 *
 * \section isa Instruction sets
 * One binary carries an AVX-512, an AVX2 and a baseline x86-64 body (only the portable body on
 * other architectures) and picks the best the CPU supports on first use; psk_select_isa()
 * overrides the choice, for tests and benchmarks.
 *
 * \code
 *   // Adam step t = 3 on 1000 floats, in place:
 *   double lr_t = lr * sqrt(1 - pow(b2, 3)) / (1 - pow(b1, 3));
 *   int rc = psk_adam(PSK_FLOAT32, param, grad, m, v, 1000, lr_t, b1, b2, eps, 0.0, 1.0, 0.0);
 * \endcode
 */
#ifndef PSKERNELS_H_
#define PSKERNELS_H_

#include <stdint.h>

#if defined(_WIN32)
#define PSK_API
#else
#define PSK_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Element types; the numbers are the Go seed's ElementType and paddle_element_type values. */
enum psk_type {
  PSK_INT32 = 0,
  PSK_UINT32 = 1,
  PSK_INT64 = 2,
  PSK_UINT64 = 3,
  PSK_FLOAT32 = 4,
  PSK_FLOAT64 = 5
};

/** Status codes returned by every kernel. */
enum psk_status {
  PSK_OK = 0,
  PSK_EBADTYPE = -1,     /**< type is not a psk_type */
  PSK_ENULL = -2,        /**< n > 0 and a required pointer is NULL */
  PSK_EBADLEN = -3,      /**< n < 0 */
  PSK_EUNSUPPORTED = -4  /**< psk_select_isa: this CPU or build lacks that instruction set */
};

/** \brief SGD with optional momentum, Nesterov and weight decay. mom: S[n], may be NULL when momentum == 0. */
PSK_API int psk_sgd(int type, void* p, const void* g, void* mom, int64_t n, double lr, double momentum,
                    double decay, int nesterov, double gscale, double gclip);

/** \brief Adam; lr_t is the bias-corrected rate for this step. m, v: S[n]. */
PSK_API int psk_adam(int type, void* p, const void* g, void* m, void* v, int64_t n, double lr_t,
                     double beta1, double beta2, double epsilon, double decay, double gscale,
                     double gclip);

/** \brief Adagrad (descending). accum: S[n]. */
PSK_API int psk_adagrad(int type, void* p, const void* g, void* accum, int64_t n, double lr,
                        double epsilon, double decay, double gscale, double gclip);

/** \brief Adadelta as in the Go seed (lr-scaled). eg = accum_gradient, ed = accum_delta,
 *  u = update_delta: S[n] each. */
PSK_API int psk_adadelta(int type, void* p, const void* g, void* eg, void* ed, void* u, int64_t n,
                         double lr, double rho, double epsilon, double decay, double gscale,
                         double gclip);

/** \brief p += alpha * g, with the integer rounding and saturation rule above. */
PSK_API int psk_accumulate(int type, void* p, const void* g, int64_t n, double alpha);

/** \brief dst = src for n elements. */
PSK_API int psk_assign(int type, void* dst, const void* src, int64_t n);

/** \brief Sum of squares of the clipped, scaled gradient, in double, in a fixed order:
 *  acc[i % 8] += y*y for y = (double)clip(x) * scale (clip as in "prep", in C; the scale is
 *  applied in double, after the conversion); the result is
 *  ((acc0+acc1)+(acc2+acc3)) + ((acc4+acc5)+(acc6+acc7)). Writes it to *out.
 *  scale = 1 is the plain sum (multiplying by 1 changes no bit). A power of two such as 2^-600
 *  keeps the sum finite when the squares of large float64 elements overflow (norm clipping
 *  retries with it when the plain sum is +Inf); it changes no rounding for elements whose scaled
 *  squares stay normal, and the ones that do not are negligible next to such a sum. */
PSK_API int psk_sum_squares(int type, const void* g, int64_t n, double gclip, double scale,
                            double* out);

/** \brief Sets *out to 1 if no element is NaN or infinite (always 1 for integer types), else 0. */
PSK_API int psk_all_finite(int type, const void* g, int64_t n, int* out);

/** \brief Name of the instruction set in use: "avx512", "avx2", "x86-64" or "portable". */
PSK_API const char* psk_isa_name(void);

/** \brief Forces an instruction set ("auto" restores the automatic choice). Returns PSK_OK, or
 *  PSK_EUNSUPPORTED if this CPU or build cannot run it or the name is unknown or NULL (the current
 *  choice is then kept). */
PSK_API int psk_select_isa(const char* name);

/** \brief Does nothing and returns PSK_OK; measures the cost of a call through the binding. */
PSK_API int psk_noop(int type);

#ifdef __cplusplus
}
#endif

#endif /* PSKERNELS_H_ */
