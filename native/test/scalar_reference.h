// scalar_reference.h: a plain, one-element-at-a-time transcription of pskernels.h for the tests.
//
// Written straight from the header's formulas with ordinary branches, and sharing no code with
// native/src, so a mistake in the SIMD bodies cannot hide in both places.
#ifndef PSK_SCALAR_REFERENCE_H_
#define PSK_SCALAR_REFERENCE_H_

#include <stdint.h>

#include <cmath>
#include <limits>
#include <type_traits>

namespace ref {

// C in the header: float for float32, double for everything else; state S is the same type.
template <class T>
struct Arith { typedef double type; };
template <>
struct Arith<float> { typedef float type; };

template <class T>
typename Arith<T>::type prep(T g, double gscale, double gclip) {
  typedef typename Arith<T>::type C;
  C x = (C)g;
  if (gclip > 0) x = x < -(C)gclip ? -(C)gclip : (x > (C)gclip ? (C)gclip : x);
  if (gscale != 1) x = x * (C)gscale;
  return x;
}

// "combine" for 32-bit integers, literally as the header writes it.
template <class T>
T combine_int32(T p, double s) {
  if (std::isnan(s)) return p;
  const double lim = 1099511627776.0;  // 2^40
  s = s < -lim ? -lim : (s > lim ? lim : s);
  double f = std::floor(s);
  double fr = s - f;
  double b = (double)p + f;
  bool up = fr > 0.5 || (fr == 0.5 && b - 2 * std::floor(b * 0.5) != 0);
  double r = b + (up ? 1 : 0);
  const double lo = (double)std::numeric_limits<T>::min();
  const double hi = (double)std::numeric_limits<T>::max();
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return (T)r;
}

// "combine" for 64-bit integers: the same rule with b = p + f in 128-bit integers.
template <class T>
T combine_int64(T p, double s) {
  if (std::isnan(s)) return p;
  const double lim = 36893488147419103232.0;  // 2^65
  s = s < -lim ? -lim : (s > lim ? lim : s);
  double f = std::floor(s);
  double fr = s - f;
  __int128 b = (__int128)p + (__int128)f;
  bool up = fr > 0.5 || (fr == 0.5 && b % 2 != 0);
  __int128 r = b + (up ? 1 : 0);
  const __int128 lo = std::numeric_limits<T>::min();
  const __int128 hi = std::numeric_limits<T>::max();
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return (T)r;
}

inline float combine(float p, float s) { return p + s; }
inline double combine(double p, double s) { return p + s; }
inline int32_t combine(int32_t p, double s) { return combine_int32(p, s); }
inline uint32_t combine(uint32_t p, double s) { return combine_int32(p, s); }
inline int64_t combine(int64_t p, double s) { return combine_int64(p, s); }
inline uint64_t combine(uint64_t p, double s) { return combine_int64(p, s); }

template <class T>
void sgd(T* p, const T* g, typename Arith<T>::type* mom, int64_t n, double lr, double momentum,
         double decay, int nesterov, double gscale, double gclip) {
  typedef typename Arith<T>::type C;
  C a = (C)lr;
  C b = (C)(lr * decay);
  C mu = (C)momentum;
  for (int64_t i = 0; i < n; i++) {
    C x = prep(g[i], gscale, gclip);
    C pc = (C)p[i];
    C vel;
    if (momentum == 0) {
      vel = (-a) * x - b * pc;
    } else {
      mom[i] = (mu * mom[i] - a * x) - b * pc;
      vel = mom[i];
    }
    C s;
    if (nesterov && momentum != 0) {
      s = (mu * vel - a * x) - b * pc;
    } else {
      s = vel;
    }
    p[i] = combine(p[i], s);
  }
}

template <class T>
void adam(T* p, const T* g, typename Arith<T>::type* m, typename Arith<T>::type* v, int64_t n,
          double lr_t, double beta1, double beta2, double epsilon, double decay, double gscale,
          double gclip) {
  typedef typename Arith<T>::type C;
  C lt = (C)lr_t, b1 = (C)beta1, c1 = (C)(1 - beta1), b2 = (C)beta2, c2 = (C)(1 - beta2);
  C e = (C)epsilon, d = (C)decay;
  for (int64_t i = 0; i < n; i++) {
    C x = prep(g[i], gscale, gclip);
    C pc = (C)p[i];
    m[i] = b1 * m[i] + c1 * x;
    v[i] = b2 * v[i] + (c2 * x) * x;
    C s = -(lt * (m[i] / std::sqrt(v[i] + e) + d * pc));
    p[i] = combine(p[i], s);
  }
}

template <class T>
void adagrad(T* p, const T* g, typename Arith<T>::type* accum, int64_t n, double lr,
             double epsilon, double decay, double gscale, double gclip) {
  typedef typename Arith<T>::type C;
  C a = (C)lr, b = (C)(lr * decay), e = (C)epsilon;
  for (int64_t i = 0; i < n; i++) {
    C x = prep(g[i], gscale, gclip);
    C pc = (C)p[i];
    accum[i] = accum[i] + x * x;
    C s = -((a * x) / std::sqrt(accum[i] + e) + b * pc);
    p[i] = combine(p[i], s);
  }
}

template <class T>
void adadelta(T* p, const T* g, typename Arith<T>::type* eg, typename Arith<T>::type* ed,
              typename Arith<T>::type* u, int64_t n, double lr, double rho, double epsilon,
              double decay, double gscale, double gclip) {
  typedef typename Arith<T>::type C;
  C r = (C)rho, cr = (C)(1 - rho), e = (C)epsilon, a = (C)lr, b = (C)(lr * decay);
  for (int64_t i = 0; i < n; i++) {
    C x = prep(g[i], gscale, gclip);
    C pc = (C)p[i];
    eg[i] = r * eg[i] + (cr * x) * x;
    u[i] = (std::sqrt(ed[i] + e) / std::sqrt(eg[i] + e)) * x;
    ed[i] = r * ed[i] + (cr * u[i]) * u[i];
    C s = -(a * u[i] + b * pc);
    p[i] = combine(p[i], s);
  }
}

template <class T>
void accumulate(T* p, const T* g, int64_t n, double alpha) {
  typedef typename Arith<T>::type C;
  for (int64_t i = 0; i < n; i++) p[i] = combine(p[i], (C)alpha * (C)g[i]);
}

template <class T>
double sum_squares(const T* g, int64_t n, double gclip, double scale) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < n; i++) {
    double y = (double)prep(g[i], 1.0, gclip) * scale;
    acc[i % 8] += y * y;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T>
int all_finite(const T* g, int64_t n) {
  if (std::is_integral<T>::value) return 1;
  for (int64_t i = 0; i < n; i++) {
    if (!std::isfinite((double)g[i])) return 0;
  }
  return 1;
}

}  // namespace ref

#endif  // PSK_SCALAR_REFERENCE_H_
