// kernels-inl.h: the kernel bodies, compiled once per instruction set into psk::PSK_ISA_NS.
//
// Deliberately has no include guard: each isa_*.cc defines PSK_ISA_NS and PSK_ISA_NAME, sets its
// own -m flags, and includes this file once. Everything except the exported table lives in an
// anonymous namespace, so the linker can never merge an AVX-512 instantiation into the baseline
// body (which a shared inline or template symbol would allow). For the same reason this file calls
// __builtin_sqrt/__builtin_floor instead of the std:: inline wrappers.
//
// The per-element formulas follow pskernels.h literally, operation by operation; the build uses
// -ffp-contract=off and no -ffast-math, so the compiler may vectorize but not reassociate or fuse.

#if !defined(PSK_ISA_NS) || !defined(PSK_ISA_NAME)
#error "define PSK_ISA_NS and PSK_ISA_NAME before including kernels-inl.h"
#endif

#include <stdint.h>

#include <limits>
#include <type_traits>

#include "kernel_table.h"
#include "pskernels.h"

namespace psk {
namespace PSK_ISA_NS {
namespace {

// C, the arithmetic and optimizer-state type: float for float32, double for every other type.
template <class T>
using Calc = std::conditional_t<std::is_same_v<T, float>, float, double>;

inline float root(float x) { return __builtin_sqrtf(x); }
inline double root(double x) { return __builtin_sqrt(x); }

// ---- Writing the step back ("combine" in the header) ----

// 32-bit integers: everything in double, where every intermediate is exact (|p| < 2^32 and the
// step is clamped to 2^40), written as selects rather than branches so the loop vectorizes.
template <class T>
inline T combine32(T p, double s) {
  constexpr double kLo = static_cast<double>(std::numeric_limits<T>::min());
  constexpr double kHi = static_cast<double>(std::numeric_limits<T>::max());
  const double pd = static_cast<double>(p);
  const double sc = s < -0x1p40 ? -0x1p40 : (s > 0x1p40 ? 0x1p40 : s);
  const double f = __builtin_floor(sc);
  const double fr = sc - f;
  const double b = pd + f;
  // b is an integer, so its parity b - 2*floor(b/2) is exactly 0.0 or 1.0: the header's
  // "parity != 0" is the round-up amount itself. Kept in double (not bool) because GCC 12 does not
  // vectorize a select between bools.
  const double odd = b - 2.0 * __builtin_floor(b * 0.5);
  const double up = fr > 0.5 ? 1.0 : (fr == 0.5 ? odd : 0.0);
  double r = b + up;
  r = r < kLo ? kLo : (r > kHi ? kHi : r);
  // A NaN step keeps p. Selected last, not tested first: an early test lets the compiler split
  // the loop body into paths, which defeats vectorization.
  return static_cast<T>(s != s ? pd : r);
}

// 64-bit integers: p + floor(s) does not fit a double exactly, so the sum is formed in 128 bits.
// Scalar on purpose (no 128-bit lanes); these types are rare in practice.
template <class T>
inline T combine64(T p, double s) {
  constexpr __int128 kLo = std::numeric_limits<T>::min();
  constexpr __int128 kHi = std::numeric_limits<T>::max();
  if (s != s) return p;
  s = s < -0x1p65 ? -0x1p65 : (s > 0x1p65 ? 0x1p65 : s);
  const double f = __builtin_floor(s);
  const double fr = s - f;
  const __int128 b = static_cast<__int128>(p) + static_cast<__int128>(f);  // |f| <= 2^65: exact
  const bool up = fr > 0.5 || (fr == 0.5 && (b & 1) != 0);
  const __int128 r = b + (up ? 1 : 0);
  return static_cast<T>(r < kLo ? kLo : (r > kHi ? kHi : r));
}

template <class T>
inline T combine(T p, Calc<T> s) {
  if constexpr (std::is_floating_point_v<T>) {
    return p + s;
  } else if constexpr (sizeof(T) == 4) {
    return combine32(p, s);
  } else {
    return combine64(p, s);
  }
}

// ---- Gradient preprocessing ----

// Clip and scale as compile-time switches, so each loop body below is branch-free.
template <class C, bool kClip, bool kScale>
struct Prep {
  C lo, hi, scale;

  template <class T>
  C operator()(T g) const {
    C x = static_cast<C>(g);
    if constexpr (kClip) {
      // The header's  x < lo ? lo : (x > hi ? hi : x),  as two selects that compile to one max
      // and one min instruction. Same result for every x, since lo <= hi: NaN fails both tests
      // and stays NaN, and x == lo or x == hi (zeros of either sign included) passes unchanged.
      const C t = lo > x ? lo : x;
      x = hi < t ? hi : t;
    }
    if constexpr (kScale) x = x * scale;
    return x;
  }
};

// Calls body(prep) with the Prep instantiation that matches the runtime clip/scale settings.
template <class C, class F>
void with_prep(double gclip, double gscale, F&& body) {
  const C hi = static_cast<C>(gclip);
  const C lo = -hi;
  const C sc = static_cast<C>(gscale);
  if (gclip > 0) {
    if (gscale != 1) body(Prep<C, true, true>{lo, hi, sc});
    else body(Prep<C, true, false>{lo, hi, sc});
  } else {
    if (gscale != 1) body(Prep<C, false, true>{lo, hi, sc});
    else body(Prep<C, false, false>{lo, hi, sc});
  }
}

// Calls body(T{}) for the element type code (already validated by the caller).
template <class F>
void with_type(int type, F&& body) {
  switch (type) {
    case PSK_INT32: body(int32_t{}); break;
    case PSK_UINT32: body(uint32_t{}); break;
    case PSK_INT64: body(int64_t{}); break;
    case PSK_UINT64: body(uint64_t{}); break;
    case PSK_FLOAT32: body(float{}); break;
    default: body(double{}); break;
  }
}

// Both of the above: body(T{}, prep).
template <class F>
void with_type_prep(int type, double gclip, double gscale, F&& body) {
  with_type(type, [&](auto tag) {
    with_prep<Calc<decltype(tag)>>(gclip, gscale, [&](auto prep) { body(tag, prep); });
  });
}

// Calls loop(begin, end) twice: for the few elements before p reaches a 64-byte boundary, then for
// the rest. Every element is independent, so the split changes no result; it keeps the full-width
// loads and stores of the main loop from straddling cache lines, which costs AVX-512 up to a third
// of its DRAM bandwidth with malloc's 16-byte alignment. The other buffers usually share p's
// misalignment (same allocator), so they end up aligned too.
template <class T, class F>
void split_at_alignment(const T* p, int64_t n, F&& loop) {
  constexpr uintptr_t kLine = 64;
  const uintptr_t mis = reinterpret_cast<uintptr_t>(p) % kLine;
  int64_t head = 0;
  if (mis % sizeof(T) == 0) {  // otherwise no whole number of elements reaches the boundary
    head = static_cast<int64_t>((kLine - mis) % kLine / sizeof(T));
    if (head > n) head = n;
  }
  loop(int64_t{0}, head);
  loop(head, n);
}

// ---- Element loops ----
// Coefficients and prep are passed by value: as locals they cannot alias the restrict-qualified
// buffers, so the compiler keeps them in registers and vectorizes without runtime alias checks.
// Each loop is called twice per kernel call (see split_at_alignment); noinline keeps one copy.
#define PSK_LOOP __attribute__((noinline))

enum class SgdMode { kPlain, kMomentum, kNesterov };

template <class C>
struct SgdCoef { C a, b, mu; };

template <SgdMode kMode, class T, class P>
PSK_LOOP void sgd_loop(T* __restrict p, const T* __restrict g, Calc<T>* __restrict mom,
                       int64_t begin, int64_t end, P prep, SgdCoef<Calc<T>> k) {
  using C = Calc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const C x = prep(g[i]);
    const C pc = static_cast<C>(p[i]);
    C s;
    if constexpr (kMode == SgdMode::kPlain) {
      s = (-k.a) * x - k.b * pc;
    } else {
      const C vel = (k.mu * mom[i] - k.a * x) - k.b * pc;
      mom[i] = vel;
      if constexpr (kMode == SgdMode::kNesterov) s = (k.mu * vel - k.a * x) - k.b * pc;
      else s = vel;
    }
    p[i] = combine(p[i], s);
  }
}

template <class C>
struct AdamCoef { C lt, b1, c1, b2, c2, e, d; };

template <class T, class P>
PSK_LOOP void adam_loop(T* __restrict p, const T* __restrict g, Calc<T>* __restrict m,
                        Calc<T>* __restrict v, int64_t begin, int64_t end, P prep,
                        AdamCoef<Calc<T>> k) {
  using C = Calc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const C x = prep(g[i]);
    const C pc = static_cast<C>(p[i]);
    const C mi = k.b1 * m[i] + k.c1 * x;
    const C vi = k.b2 * v[i] + (k.c2 * x) * x;
    m[i] = mi;
    v[i] = vi;
    const C s = -(k.lt * (mi / root(vi + k.e) + k.d * pc));
    p[i] = combine(p[i], s);
  }
}

template <class C>
struct AdagradCoef { C a, b, e; };

template <class T, class P>
PSK_LOOP void adagrad_loop(T* __restrict p, const T* __restrict g, Calc<T>* __restrict acc,
                           int64_t begin, int64_t end, P prep, AdagradCoef<Calc<T>> k) {
  using C = Calc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const C x = prep(g[i]);
    const C pc = static_cast<C>(p[i]);
    const C a = acc[i] + x * x;
    acc[i] = a;
    const C s = -((k.a * x) / root(a + k.e) + k.b * pc);
    p[i] = combine(p[i], s);
  }
}

template <class C>
struct AdadeltaCoef { C r, cr, e, a, b; };

template <class T, class P>
PSK_LOOP void adadelta_loop(T* __restrict p, const T* __restrict g, Calc<T>* __restrict eg,
                            Calc<T>* __restrict ed, Calc<T>* __restrict u, int64_t begin,
                            int64_t end, P prep, AdadeltaCoef<Calc<T>> k) {
  using C = Calc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const C x = prep(g[i]);
    const C pc = static_cast<C>(p[i]);
    const C egi = k.r * eg[i] + (k.cr * x) * x;
    const C ui = (root(ed[i] + k.e) / root(egi + k.e)) * x;
    const C edi = k.r * ed[i] + (k.cr * ui) * ui;
    eg[i] = egi;
    u[i] = ui;
    ed[i] = edi;
    const C s = -(k.a * ui + k.b * pc);
    p[i] = combine(p[i], s);
  }
}

template <class T>
PSK_LOOP void accumulate_loop(T* __restrict p, const T* __restrict g, int64_t begin,
                              int64_t end, Calc<T> alpha) {
  using C = Calc<T>;
  for (int64_t i = begin; i < end; ++i) p[i] = combine(p[i], alpha * static_cast<C>(g[i]));
}

// Eight running sums, element i feeding sum i % 8, combined pairwise at the end: the order the
// header fixes. Each sum is a lane of one 8 x double vector, so vectorizing changes no rounding.
// The scale multiplies in double after the conversion (a float32 prep scale could overflow).
template <class T, class P>
double sum_squares_loop(const T* __restrict g, int64_t n, P prep, double scale) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const double y = static_cast<double>(prep(g[i + j])) * scale;
      acc[j] += y * y;
    }
  }
  for (int j = 0; i < n; ++i, ++j) {  // i is a multiple of 8 here, so i % 8 == j
    const double y = static_cast<double>(prep(g[i])) * scale;
    acc[j] += y * y;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Scans in blocks so a vectorized OR-reduction does the work and a bad value still stops early.
template <class T>
bool all_finite_loop(const T* __restrict g, int64_t n) {
  constexpr int64_t kBlock = 2048;
  constexpr T kMax = std::numeric_limits<T>::max();
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = n - start < kBlock ? n : start + kBlock;
    int bad = 0;
    for (int64_t i = start; i < end; ++i) bad |= !(g[i] >= -kMax && g[i] <= kMax);  // NaN: true
    if (bad) return false;
  }
  return true;
}

// ---- Table entries: derive the coefficients (in double, cast once) and pick the loop ----

void sgd(int type, void* p, const void* g, void* mom, int64_t n, double lr, double momentum,
         double decay, int nesterov, double gscale, double gclip) {
  with_type_prep(type, gclip, gscale, [&](auto tag, auto prep) {
    using T = decltype(tag);
    using C = Calc<T>;
    const SgdCoef<C> k{static_cast<C>(lr), static_cast<C>(lr * decay), static_cast<C>(momentum)};
    T* pt = static_cast<T*>(p);
    const T* gt = static_cast<const T*>(g);
    C* mt = static_cast<C*>(mom);
    split_at_alignment(pt, n, [&](int64_t begin, int64_t end) {
      if (momentum == 0) sgd_loop<SgdMode::kPlain>(pt, gt, mt, begin, end, prep, k);
      else if (nesterov) sgd_loop<SgdMode::kNesterov>(pt, gt, mt, begin, end, prep, k);
      else sgd_loop<SgdMode::kMomentum>(pt, gt, mt, begin, end, prep, k);
    });
  });
}

void adam(int type, void* p, const void* g, void* m, void* v, int64_t n, double lr_t,
          double beta1, double beta2, double epsilon, double decay, double gscale, double gclip) {
  with_type_prep(type, gclip, gscale, [&](auto tag, auto prep) {
    using T = decltype(tag);
    using C = Calc<T>;
    const AdamCoef<C> k{static_cast<C>(lr_t),        static_cast<C>(beta1),
                        static_cast<C>(1 - beta1),   static_cast<C>(beta2),
                        static_cast<C>(1 - beta2),   static_cast<C>(epsilon),
                        static_cast<C>(decay)};
    T* pt = static_cast<T*>(p);
    split_at_alignment(pt, n, [&](int64_t begin, int64_t end) {
      adam_loop(pt, static_cast<const T*>(g), static_cast<C*>(m), static_cast<C*>(v), begin, end,
                prep, k);
    });
  });
}

void adagrad(int type, void* p, const void* g, void* accum, int64_t n, double lr, double epsilon,
             double decay, double gscale, double gclip) {
  with_type_prep(type, gclip, gscale, [&](auto tag, auto prep) {
    using T = decltype(tag);
    using C = Calc<T>;
    const AdagradCoef<C> k{static_cast<C>(lr), static_cast<C>(lr * decay),
                           static_cast<C>(epsilon)};
    T* pt = static_cast<T*>(p);
    split_at_alignment(pt, n, [&](int64_t begin, int64_t end) {
      adagrad_loop(pt, static_cast<const T*>(g), static_cast<C*>(accum), begin, end, prep, k);
    });
  });
}

void adadelta(int type, void* p, const void* g, void* eg, void* ed, void* u, int64_t n, double lr,
              double rho, double epsilon, double decay, double gscale, double gclip) {
  with_type_prep(type, gclip, gscale, [&](auto tag, auto prep) {
    using T = decltype(tag);
    using C = Calc<T>;
    const AdadeltaCoef<C> k{static_cast<C>(rho), static_cast<C>(1 - rho),
                            static_cast<C>(epsilon), static_cast<C>(lr),
                            static_cast<C>(lr * decay)};
    T* pt = static_cast<T*>(p);
    split_at_alignment(pt, n, [&](int64_t begin, int64_t end) {
      adadelta_loop(pt, static_cast<const T*>(g), static_cast<C*>(eg), static_cast<C*>(ed),
                    static_cast<C*>(u), begin, end, prep, k);
    });
  });
}

void accumulate(int type, void* p, const void* g, int64_t n, double alpha) {
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    T* pt = static_cast<T*>(p);
    split_at_alignment(pt, n, [&](int64_t begin, int64_t end) {
      accumulate_loop(pt, static_cast<const T*>(g), begin, end, static_cast<Calc<T>>(alpha));
    });
  });
}

double sum_squares(int type, const void* g, int64_t n, double gclip, double scale) {
  double out = 0;
  with_type_prep(type, gclip, 1.0, [&](auto tag, auto prep) {
    out = sum_squares_loop(static_cast<const decltype(tag)*>(g), n, prep, scale);
  });
  return out;
}

bool all_finite(int type, const void* g, int64_t n) {
  if (type == PSK_FLOAT32) return all_finite_loop(static_cast<const float*>(g), n);
  if (type == PSK_FLOAT64) return all_finite_loop(static_cast<const double*>(g), n);
  return true;  // integers are always finite
}

}  // namespace

// Declared in kernel_table.h; constant-initialized, so usable before any static constructor runs.
const KernelTable kTable = {PSK_ISA_NAME, &sgd,        &adam,        &adagrad,
                            &adadelta,    &accumulate, &sum_squares, &all_finite};

}  // namespace PSK_ISA_NS
}  // namespace psk

#undef PSK_LOOP
