// kernel_test.cc: checks every kernel of one instruction-set body against scalar_reference.h.
//
// Usage: pskernels_test <isa> [seed]  compare the avx512 / avx2 / x86-64 / portable body with
//                                     the reference (exit 77, "skipped", if this CPU or build
//                                     lacks it); the seed defaults to kSeed
//        pskernels_test api           status codes and psk_select_isa
// Floats must match bit for bit (two NaNs match whatever their payload), integers exactly, and
// guard elements around each range must keep their bytes.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "pskernels.h"
#include "scalar_reference.h"

namespace {

constexpr uint64_t kSeed = 0x5eedc0ffee2024ULL;

// ---- A tiny assertion helper ----

int64_t g_checks = 0;
int64_t g_failures = 0;

void fail(const std::string& what) {
  ++g_failures;
  if (g_failures <= 25) fprintf(stderr, "FAIL: %s\n", what.c_str());
  if (g_failures == 25) fprintf(stderr, "(further failures not shown)\n");
}

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) fail(what);
}

// ---- Random numbers (splitmix64: tiny, and the same sequence everywhere) ----

struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  int below(int k) { return static_cast<int>(next() % static_cast<uint64_t>(k)); }
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1p-53;
  }
};

// What a buffer holds decides which values are plausible in it.
enum class Role { kSigned, kNonNegative };

template <class E>
E random_float(Rng& rng, Role role, int special_one_in) {
  typedef std::numeric_limits<E> L;
  if (rng.below(special_one_in) == 0) {
    const E specials[] = {E(0),           -E(0),          L::denorm_min(), -L::denorm_min(),
                          L::min() / E(3), -L::min() / E(7), L::min(),       E(1e30),
                          E(-1e30),        L::max(),       -L::max(),       L::quiet_NaN(),
                          L::infinity(),   -L::infinity(), E(1),            E(-1),
                          E(0.5)};
    return specials[rng.below(sizeof(specials) / sizeof(specials[0]))];
  }
  return static_cast<E>(role == Role::kSigned ? rng.uniform(-2, 2) : rng.uniform(0, 2));
}

template <class E>
E random_int(Rng& rng) {
  typedef std::numeric_limits<E> L;
  const int pick = rng.below(8);
  if (pick == 0) {
    const E specials[] = {L::min(), L::max(), E(L::min() + 1), E(L::max() - 1), E(0), E(1),
                          E(-1),    E(2),     E(L::max() / 2), E(L::max() / 2 + 1)};
    return specials[rng.below(sizeof(specials) / sizeof(specials[0]))];
  }
  if (pick == 1) return static_cast<E>(rng.next());
  if (pick == 2 && sizeof(E) == 8) {
    // Around 2^53, where doubles stop representing every integer.
    return static_cast<E>((1ULL << 53) + rng.below(5) - 2);
  }
  return static_cast<E>(L::is_signed ? rng.below(2001) - 1000 : rng.below(2001));
}

template <class E>
E random_value(Rng& rng, Role role, int special_one_in) {
  if constexpr (std::is_floating_point_v<E>) return random_float<E>(rng, role, special_one_in);
  else return random_int<E>(rng);
}

template <class E>
bool same(E a, E b) {
  if constexpr (std::is_floating_point_v<E>) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return memcmp(&a, &b, sizeof(E)) == 0;  // bit identical: +0 and -0 differ
  } else {
    return a == b;
  }
}

std::string hex(uint64_t x) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%llx", (unsigned long long)x);
  return buf;
}

template <class E>
std::string show(E x) {
  char buf[64];
  if constexpr (std::is_floating_point_v<E>) snprintf(buf, sizeof buf, "%.17g", (double)x);
  else if constexpr (std::is_signed_v<E>) snprintf(buf, sizeof buf, "%lld", (long long)x);
  else snprintf(buf, sizeof buf, "%llu", (unsigned long long)x);
  return buf;
}

// ---- Buffers with guard elements, placed at an offset from a 64-byte aligned base ----

constexpr int64_t kGuard = 16;  // 16 elements: 64 or 128 bytes, so the base stays aligned

template <class E>
class Buf {
 public:
  Buf(int64_t n, int64_t offset) : n_(n), offset_(offset), total_(2 * kGuard + offset + n) {
    const size_t bytes = (static_cast<size_t>(total_) * sizeof(E) + 63) / 64 * 64;
    mem_ = static_cast<E*>(aligned_alloc(64, bytes));
  }
  Buf(const Buf& other) : Buf(other.n_, other.offset_) {
    memcpy(mem_, other.mem_, static_cast<size_t>(total_) * sizeof(E));
  }
  Buf& operator=(const Buf&) = delete;
  ~Buf() { free(mem_); }

  E* data() { return mem_ + kGuard + offset_; }
  int64_t n() const { return n_; }

  // Fills the guards with random bytes and the range with test values.
  void fill(Rng& rng, Role role, int special_one_in) {
    unsigned char* bytes = reinterpret_cast<unsigned char*>(mem_);
    for (size_t i = 0; i < static_cast<size_t>(total_) * sizeof(E); ++i) {
      bytes[i] = static_cast<unsigned char>(rng.next());
    }
    for (int64_t i = 0; i < n_; ++i) data()[i] = random_value<E>(rng, role, special_one_in);
  }

  // Guards byte-equal, range value-equal (see same()).
  bool equals(const Buf& want, std::string* why) const {
    const size_t guard_lo = static_cast<size_t>(kGuard + offset_) * sizeof(E);
    const size_t guard_hi = static_cast<size_t>(kGuard + offset_ + n_) * sizeof(E);
    const size_t all = static_cast<size_t>(total_) * sizeof(E);
    if (memcmp(mem_, want.mem_, guard_lo) != 0 ||
        memcmp(reinterpret_cast<const char*>(mem_) + guard_hi,
               reinterpret_cast<const char*>(want.mem_) + guard_hi, all - guard_hi) != 0) {
      *why = "guard bytes changed";
      return false;
    }
    const E* got = mem_ + kGuard + offset_;
    const E* exp = want.mem_ + kGuard + offset_;
    for (int64_t i = 0; i < n_; ++i) {
      if (!same(got[i], exp[i])) {
        *why = "element " + std::to_string(i) + ": got " + show(got[i]) + ", want " + show(exp[i]);
        return false;
      }
    }
    return true;
  }

 private:
  int64_t n_, offset_, total_;
  E* mem_;
};

// ---- One comparison: fill p, g and the state, run the body and the reference, compare ----

// Where buffer b of a call starts, in elements past a 64-byte aligned base: in layouts 0-2 all
// buffers start at 0, 1 or 3 (as when one allocator made them all); in layout 3 they are
// staggered, buffer b at {0, 1, 3}[b % 3], so the parameter's alignment is not the others'.
constexpr int kLayouts = 4;

int64_t start_offset(int layout, int buffer) {
  static const int64_t kOffsets[] = {0, 1, 3};
  return kOffsets[layout < 3 ? layout : buffer % 3];
}

template <class T>
using State = typename ref::Arith<T>::type;

template <class T>
struct Bufs {
  Buf<T> p, g;
  std::vector<Buf<State<T>>> s;
};

template <class T>
using KernelFn = std::function<int(Bufs<T>&)>;

template <class T>
void compare(const std::string& what, Rng& rng, int64_t n, int layout,
             const std::vector<Role>& state_roles, const KernelFn<T>& run,
             const std::function<void(Bufs<T>&)>& reference) {
  const uint64_t seed = rng.state;
  Bufs<T> got{Buf<T>(n, start_offset(layout, 0)), Buf<T>(n, start_offset(layout, 1)), {}};
  got.p.fill(rng, Role::kSigned, 12);
  got.g.fill(rng, Role::kSigned, 12);
  for (Role role : state_roles) {
    got.s.emplace_back(n, start_offset(layout, static_cast<int>(got.s.size()) + 2));
    got.s.back().fill(rng, role, 24);
  }
  Bufs<T> want = got;
  const Buf<T> g_before = got.g;

  const std::string where = what + " n=" + std::to_string(n) + " layout=" +
                            std::to_string(layout) + " rng state " + hex(seed);
  const int rc = run(got);
  reference(want);
  expect(rc == PSK_OK, where + ": status " + std::to_string(rc));
  // equals() fills `why`, so it must run before the message is built.
  std::string why;
  bool ok = got.p.equals(want.p, &why);
  expect(ok, where + ": param: " + why);
  ok = got.g.equals(g_before, &why);
  expect(ok, where + ": gradient buffer was written: " + why);
  for (size_t k = 0; k < got.s.size(); ++k) {
    ok = got.s[k].equals(want.s[k], &why);
    expect(ok, where + ": state " + std::to_string(k) + ": " + why);
  }
}

// Lengths: every one up to 67 (all vector-width tails), then a couple of longer ones.
std::vector<int64_t> lengths() {
  std::vector<int64_t> out;
  for (int64_t n = 0; n <= 67; ++n) out.push_back(n);
  out.push_back(1000);
  out.push_back(4099);
  return out;
}

// Runs body(n, layout, variant) over all lengths and layouts; variant cycles through the
// hyper-parameter sets, so each set meets many lengths and alignments without multiplying them.
void sweep(int sets, const std::function<void(int64_t, int, int)>& body) {
  int turn = 0;
  for (int64_t n : lengths()) {
    for (int layout = 0; layout < kLayouts; ++layout) body(n, layout, turn++ % sets);
  }
}

template <class T>
double clip_value() {
  // Floats clip well inside the random range; integers inside the small-value range.
  return std::is_floating_point_v<T> ? 0.75 : 500.5;
}

// ---- The kernels, one element type at a time ----

template <class T>
void test_type(const char* tname, Rng& rng) {
  const int type = std::is_same_v<T, int32_t>    ? PSK_INT32
                   : std::is_same_v<T, uint32_t> ? PSK_UINT32
                   : std::is_same_v<T, int64_t>  ? PSK_INT64
                   : std::is_same_v<T, uint64_t> ? PSK_UINT64
                   : std::is_same_v<T, float>    ? PSK_FLOAT32
                                                 : PSK_FLOAT64;
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // Rates: exact integer steps (1), ties (0.5), generic fractions, saturation, and +Inf, which
  // gives infinite steps and, times zero, NaN steps.
  const double rates[] = {0.1, 1.0, 0.5, 1e15, inf, 0.001};
  const int nrates = sizeof(rates) / sizeof(rates[0]);

  // Clip off, on, and tiny (1e-50: zero as a float, so float32 gradients clip to signed zeros).
  const double clips[] = {0.0, clip_value<T>(), 1e-50};
  for (int clip = 0; clip < 3; ++clip) {
    for (int scaled = 0; scaled < 2; ++scaled) {
      if (clip == 2 && scaled) continue;  // keeps the run short; scaling is covered above
      const double gclip = clips[clip];
      const double gscale = scaled ? 0.37 : 1.0;
      const std::string base =
          std::string(tname) + " clip=" + show(gclip) + (scaled ? " scale" : "");

      for (double momentum : {0.0, 0.9}) {
        for (int nesterov = 0; nesterov < 2; ++nesterov) {
          for (double decay : {0.0, 0.01}) {
            const std::string what = "sgd " + base + " momentum=" + show(momentum) +
                                     " nesterov=" + std::to_string(nesterov) +
                                     " decay=" + show(decay);
            sweep(nrates, [&](int64_t n, int layout, int k) {
              const double lr = rates[k];
              // With momentum 0 the buffer is optional: pass NULL to prove it is not touched.
              const bool with_mom = momentum != 0;
              compare<T>(
                  what + " lr=" + show(lr), rng, n, layout,
                  with_mom ? std::vector<Role>{Role::kSigned} : std::vector<Role>{},
                  [&](Bufs<T>& b) {
                    return psk_sgd(type, b.p.data(), b.g.data(),
                                   with_mom ? b.s[0].data() : nullptr, n, lr, momentum, decay,
                                   nesterov, gscale, gclip);
                  },
                  [&](Bufs<T>& b) {
                    ref::sgd(b.p.data(), b.g.data(), with_mom ? b.s[0].data() : nullptr, n, lr,
                             momentum, decay, nesterov, gscale, gclip);
                  });
            });
          }
        }
      }

      for (double decay : {0.0, 0.01}) {
        const std::string d = " decay=" + show(decay);
        sweep(nrates * 2, [&](int64_t n, int layout, int k) {
          const double lr = rates[k / 2];
          const double eps = k % 2 ? 1e-8 : 0.0;  // 0: an all-zero state divides 0 by 0
          compare<T>(
              "adam " + base + d + " lr=" + show(lr) + " eps=" + show(eps), rng, n, layout,
              {Role::kSigned, Role::kNonNegative},
              [&](Bufs<T>& b) {
                return psk_adam(type, b.p.data(), b.g.data(), b.s[0].data(), b.s[1].data(), n,
                                lr, 0.9, 0.999, eps, decay, gscale, gclip);
              },
              [&](Bufs<T>& b) {
                ref::adam(b.p.data(), b.g.data(), b.s[0].data(), b.s[1].data(), n, lr, 0.9,
                          0.999, eps, decay, gscale, gclip);
              });
        });
        sweep(nrates * 2, [&](int64_t n, int layout, int k) {
          const double lr = rates[k / 2];
          const double eps = k % 2 ? 1e-6 : 0.0;
          compare<T>(
              "adagrad " + base + d + " lr=" + show(lr) + " eps=" + show(eps), rng, n, layout,
              {Role::kNonNegative},
              [&](Bufs<T>& b) {
                return psk_adagrad(type, b.p.data(), b.g.data(), b.s[0].data(), n, lr, eps,
                                   decay, gscale, gclip);
              },
              [&](Bufs<T>& b) {
                ref::adagrad(b.p.data(), b.g.data(), b.s[0].data(), n, lr, eps, decay, gscale,
                             gclip);
              });
        });
        sweep(nrates, [&](int64_t n, int layout, int k) {
          const double lr = rates[k];
          compare<T>(
              "adadelta " + base + d + " lr=" + show(lr), rng, n, layout,
              {Role::kNonNegative, Role::kNonNegative, Role::kSigned},
              [&](Bufs<T>& b) {
                return psk_adadelta(type, b.p.data(), b.g.data(), b.s[0].data(), b.s[1].data(),
                                    b.s[2].data(), n, lr, 0.95, 1e-6, decay, gscale, gclip);
              },
              [&](Bufs<T>& b) {
                ref::adadelta(b.p.data(), b.g.data(), b.s[0].data(), b.s[1].data(),
                              b.s[2].data(), n, lr, 0.95, 1e-6, decay, gscale, gclip);
              });
        });
      }
    }
  }

  // accumulate takes no clip or scale; alpha covers ties of both signs, saturation, Inf and NaN.
  const double alphas[] = {1.0, 0.5, -0.5, 0.3, 2.5, 1e15, -1e300, inf, -inf, nan};
  sweep(sizeof(alphas) / sizeof(alphas[0]), [&](int64_t n, int layout, int k) {
    const double alpha = alphas[k];
    compare<T>(
        std::string("accumulate ") + tname + " alpha=" + show(alpha), rng, n, layout, {},
        [&](Bufs<T>& b) { return psk_accumulate(type, b.p.data(), b.g.data(), n, alpha); },
        [&](Bufs<T>& b) { ref::accumulate(b.p.data(), b.g.data(), n, alpha); });
  });

  // assign: the "gradient" buffer is the source, the parameter the destination.
  sweep(1, [&](int64_t n, int layout, int) {
    compare<T>(
        std::string("assign ") + tname, rng, n, layout, {},
        [&](Bufs<T>& b) { return psk_assign(type, b.p.data(), b.g.data(), n); },
        [&](Bufs<T>& b) { memcpy(b.p.data(), b.g.data(), static_cast<size_t>(n) * sizeof(T)); });
  });

  // sum_squares: compared bit for bit, so the fixed summation order is checked too; with the
  // overflow scale 2^-600 as well (the special values include the type's largest finite ones).
  for (double gclip : clips) {
    for (double scale : {1.0, 0x1p-600}) {
      sweep(2, [&](int64_t n, int layout, int k) {
        Buf<T> g(n, start_offset(layout, 0));
        g.fill(rng, Role::kSigned, k == 0 ? 12 : 1 << 30);  // with and without special values
        double got = -1;
        const int rc = psk_sum_squares(type, g.data(), n, gclip, scale, &got);
        const double want = ref::sum_squares(g.data(), n, gclip, scale);
        expect(rc == PSK_OK && same(got, want),
               std::string("sum_squares ") + tname + " clip=" + show(gclip) + " scale=" +
                   show(scale) + " n=" + std::to_string(n) + " layout=" +
                   std::to_string(layout) + ": got " + show(got) + ", want " + show(want));
      });
    }
  }

  // all_finite: finite data, then one NaN or infinity at the start, the end, or inside.
  sweep(1, [&](int64_t n, int layout, int) {
    for (int trial = 0; trial < 4; ++trial) {
      Buf<T> g(n, start_offset(layout, 0));
      g.fill(rng, Role::kSigned, 1 << 30);
      if constexpr (std::is_floating_point_v<T>) {
        const T bad[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                         -std::numeric_limits<T>::infinity()};
        if (trial > 0 && n > 0) {
          const int64_t at = trial == 1 ? 0 : trial == 2 ? n - 1 : rng.below(static_cast<int>(n));
          g.data()[at] = bad[rng.below(3)];
        }
      }
      int got = -1;
      const int rc = psk_all_finite(type, g.data(), n, &got);
      const int want = ref::all_finite(g.data(), n);
      expect(rc == PSK_OK && got == want, std::string("all_finite ") + tname + " n=" +
                                              std::to_string(n) + " trial=" +
                                              std::to_string(trial) + ": got " +
                                              std::to_string(got));
    }
  });
  // A long run whose only bad value sits past the first scan block.
  if constexpr (std::is_floating_point_v<T>) {
    std::vector<T> g(10000, T(1));
    g[9999] = std::numeric_limits<T>::infinity();
    int got = -1;
    psk_all_finite(type, g.data(), static_cast<int64_t>(g.size()), &got);
    expect(got == 0, std::string("all_finite ") + tname + " late infinity");
  }
}

int test_isa(const char* isa, uint64_t seed) {
  if (psk_select_isa(isa) != PSK_OK) {
    printf("skipped: this CPU or build has no %s body\n", isa);
    return 77;  // ctest's SKIP_RETURN_CODE
  }
  expect(strcmp(psk_isa_name(), isa) == 0, std::string("psk_isa_name() == ") + isa);
  Rng rng{seed};
  printf("isa %s, seed %s\n", isa, hex(seed).c_str());
  test_type<int32_t>("int32", rng);
  test_type<uint32_t>("uint32", rng);
  test_type<int64_t>("int64", rng);
  test_type<uint64_t>("uint64", rng);
  test_type<float>("float32", rng);
  test_type<double>("float64", rng);
  return 0;
}

// ---- Status codes and instruction-set selection ----

void test_api() {
  float p[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1}, s1[4] = {}, s2[4] = {}, s3[4] = {};
  double out = -1;
  int flag = -1;

  // n == 0 with NULL everywhere is fine, and writes nothing.
  expect(psk_sgd(PSK_FLOAT32, nullptr, nullptr, nullptr, 0, 0.1, 0.9, 0, 1, 1, 0) == PSK_OK,
         "sgd n=0 NULL");
  expect(psk_adam(PSK_FLOAT64, nullptr, nullptr, nullptr, nullptr, 0, 0.1, 0.9, 0.999, 1e-8, 0,
                  1, 0) == PSK_OK, "adam n=0 NULL");
  expect(psk_adagrad(PSK_INT32, nullptr, nullptr, nullptr, 0, 0.1, 1e-6, 0, 1, 0) == PSK_OK,
         "adagrad n=0 NULL");
  expect(psk_adadelta(PSK_UINT64, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 1, 0.95, 1e-6,
                      0, 1, 0) == PSK_OK, "adadelta n=0 NULL");
  expect(psk_accumulate(PSK_INT64, nullptr, nullptr, 0, 1) == PSK_OK, "accumulate n=0 NULL");
  expect(psk_assign(PSK_UINT32, nullptr, nullptr, 0) == PSK_OK, "assign n=0 NULL");
  expect(psk_sum_squares(PSK_FLOAT32, nullptr, 0, 0, 1, nullptr) == PSK_OK, "sum_squares n=0 NULL");
  expect(psk_all_finite(PSK_FLOAT32, nullptr, 0, nullptr) == PSK_OK, "all_finite n=0 NULL");
  expect(psk_sum_squares(PSK_FLOAT32, nullptr, 0, 0, 1, &out) == PSK_OK && out == 0.0,
         "sum_squares n=0 gives 0");
  expect(psk_all_finite(PSK_FLOAT32, nullptr, 0, &flag) == PSK_OK && flag == 1,
         "all_finite n=0 gives 1");

  // The overflow scale: the squares of these finite float64 elements overflow, scaled ones do
  // not, and a power-of-two scale rounds nothing here (acc0 = acc1 = y*y, the rest 0).
  const double big[2] = {1e200, -1e200};
  const double y = 1e200 * 0x1p-600;
  expect(psk_sum_squares(PSK_FLOAT64, big, 2, 0, 1, &out) == PSK_OK &&
         out == std::numeric_limits<double>::infinity(), "sum_squares overflows unscaled");
  expect(psk_sum_squares(PSK_FLOAT64, big, 2, 0, 0x1p-600, &out) == PSK_OK && out == y * y + y * y,
         "sum_squares scaled by 2^-600: got " + show(out));

  // Each required pointer NULL in turn, with n > 0: PSK_ENULL and nothing touched.
  expect(psk_sgd(PSK_FLOAT32, nullptr, g, s1, 4, 0.1, 0.9, 0, 0, 1, 0) == PSK_ENULL, "sgd p");
  expect(psk_sgd(PSK_FLOAT32, p, nullptr, s1, 4, 0.1, 0.9, 0, 0, 1, 0) == PSK_ENULL, "sgd g");
  expect(psk_sgd(PSK_FLOAT32, p, g, nullptr, 4, 0.1, 0.9, 0, 0, 1, 0) == PSK_ENULL, "sgd mom");
  expect(psk_adam(PSK_FLOAT32, p, g, nullptr, s2, 4, 0.1, 0.9, 0.999, 1e-8, 0, 1, 0) ==
         PSK_ENULL, "adam m");
  expect(psk_adam(PSK_FLOAT32, p, g, s1, nullptr, 4, 0.1, 0.9, 0.999, 1e-8, 0, 1, 0) ==
         PSK_ENULL, "adam v");
  expect(psk_adagrad(PSK_FLOAT32, p, g, nullptr, 4, 0.1, 1e-6, 0, 1, 0) == PSK_ENULL,
         "adagrad accum");
  expect(psk_adadelta(PSK_FLOAT32, p, g, s1, s2, nullptr, 4, 1, 0.95, 1e-6, 0, 1, 0) ==
         PSK_ENULL, "adadelta u");
  expect(psk_adadelta(PSK_FLOAT32, p, g, nullptr, s2, s3, 4, 1, 0.95, 1e-6, 0, 1, 0) ==
         PSK_ENULL, "adadelta eg");
  expect(psk_accumulate(PSK_FLOAT32, p, nullptr, 4, 1) == PSK_ENULL, "accumulate g");
  expect(psk_assign(PSK_FLOAT32, nullptr, g, 4) == PSK_ENULL, "assign dst");
  expect(psk_sum_squares(PSK_FLOAT32, g, 4, 0, 1, nullptr) == PSK_ENULL, "sum_squares out");
  expect(psk_all_finite(PSK_FLOAT32, nullptr, 4, &flag) == PSK_ENULL, "all_finite g");
  expect(p[0] == 1 && p[3] == 4 && s1[0] == 0 && s2[0] == 0 && s3[0] == 0,
         "failed calls wrote nothing");
  // momentum == 0 does not need the momentum buffer.
  expect(psk_sgd(PSK_FLOAT32, p, g, nullptr, 4, 0.5, 0, 0, 1, 1, 0) == PSK_OK && p[0] == 0.5f,
         "sgd without momentum buffer");

  // Bad types and lengths, checked before the pointers.
  for (int bad : {-1, 6, 42}) {
    expect(psk_sgd(bad, p, g, s1, 4, 0.1, 0, 0, 0, 1, 0) == PSK_EBADTYPE, "sgd bad type");
    expect(psk_adam(bad, p, g, s1, s2, 4, 0.1, 0.9, 0.999, 1e-8, 0, 1, 0) == PSK_EBADTYPE,
           "adam bad type");
    expect(psk_adagrad(bad, p, g, s1, 4, 0.1, 1e-6, 0, 1, 0) == PSK_EBADTYPE,
           "adagrad bad type");
    expect(psk_adadelta(bad, p, g, s1, s2, s3, 4, 1, 0.95, 1e-6, 0, 1, 0) == PSK_EBADTYPE,
           "adadelta bad type");
    expect(psk_accumulate(bad, p, g, 4, 1) == PSK_EBADTYPE, "accumulate bad type");
    expect(psk_assign(bad, p, g, 4) == PSK_EBADTYPE, "assign bad type");
    expect(psk_sum_squares(bad, g, 4, 0, 1, &out) == PSK_EBADTYPE, "sum_squares bad type");
    expect(psk_all_finite(bad, g, 4, &flag) == PSK_EBADTYPE, "all_finite bad type");
    expect(psk_sgd(bad, nullptr, nullptr, nullptr, 0, 0.1, 0, 0, 0, 1, 0) == PSK_EBADTYPE,
           "bad type wins over n == 0");
  }
  for (int64_t bad : {int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    expect(psk_sgd(PSK_FLOAT32, p, g, s1, bad, 0.1, 0, 0, 0, 1, 0) == PSK_EBADLEN, "sgd n<0");
    expect(psk_adam(PSK_FLOAT32, p, g, s1, s2, bad, 0.1, 0.9, 0.999, 1e-8, 0, 1, 0) ==
           PSK_EBADLEN, "adam n<0");
    expect(psk_adagrad(PSK_FLOAT32, p, g, s1, bad, 0.1, 1e-6, 0, 1, 0) == PSK_EBADLEN,
           "adagrad n<0");
    expect(psk_adadelta(PSK_FLOAT32, p, g, s1, s2, s3, bad, 1, 0.95, 1e-6, 0, 1, 0) ==
           PSK_EBADLEN, "adadelta n<0");
    expect(psk_accumulate(PSK_FLOAT32, p, g, bad, 1) == PSK_EBADLEN, "accumulate n<0");
    expect(psk_assign(PSK_FLOAT32, p, g, bad) == PSK_EBADLEN, "assign n<0");
    expect(psk_sum_squares(PSK_FLOAT32, g, bad, 0, 1, &out) == PSK_EBADLEN, "sum_squares n<0");
    expect(psk_all_finite(PSK_FLOAT32, g, bad, &flag) == PSK_EBADLEN, "all_finite n<0");
    expect(psk_sgd(PSK_FLOAT32, nullptr, nullptr, nullptr, bad, 0.1, 0, 0, 0, 1, 0) ==
           PSK_EBADLEN, "n<0 wins over NULL");
  }
  expect(psk_noop(PSK_FLOAT32) == PSK_OK, "noop");

  // Instruction-set selection: every name this build knows, round trip through psk_isa_name.
  const std::string automatic = psk_isa_name();
  printf("automatic choice: %s\n", automatic.c_str());
  int supported = 0;
  for (const char* name : {"avx512", "avx2", "x86-64", "portable"}) {
    const int rc = psk_select_isa(name);
    expect(rc == PSK_OK || rc == PSK_EUNSUPPORTED, std::string("select ") + name);
    if (rc == PSK_OK) {
      ++supported;
      expect(psk_isa_name() == std::string(name), std::string("round trip ") + name);
      // Unknown names are rejected and keep the current choice.
      for (const char* bad : {"sse9", "", "AVX2", "avx512 ", "auto2"}) {
        expect(psk_select_isa(bad) == PSK_EUNSUPPORTED, std::string("reject '") + bad + "'");
        expect(psk_isa_name() == std::string(name), std::string("kept after '") + bad + "'");
      }
      expect(psk_select_isa(nullptr) == PSK_EUNSUPPORTED, "reject NULL name");
    } else {
      printf("not available here: %s\n", name);
    }
  }
  expect(supported >= 1, "at least one body runs");
#if defined(__x86_64__)
  expect(psk_select_isa("x86-64") == PSK_OK, "baseline always runs on x86-64");
  expect(psk_select_isa("portable") == PSK_EUNSUPPORTED, "no portable body on x86-64");
#else
  expect(psk_select_isa("portable") == PSK_OK, "portable body");
  expect(psk_select_isa("avx2") == PSK_EUNSUPPORTED, "no AVX2 body off x86-64");
#endif
  expect(psk_select_isa("auto") == PSK_OK && psk_isa_name() == automatic, "auto restores");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s api | avx512|avx2|x86-64|portable [seed]\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "api") == 0) {
    test_api();
  } else if (test_isa(argv[1], argc == 3 ? strtoull(argv[2], nullptr, 0) : kSeed) == 77) {
    return 77;
  }
  printf("%lld checks: %lld passed, %lld failed\n", (long long)g_checks,
         (long long)(g_checks - g_failures), (long long)g_failures);
  return g_failures == 0 ? 0 : 1;
}
