// dispatch.cc: the C API: argument checks, instruction-set choice, calls into the chosen body.
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <initializer_list>

#include "kernel_table.h"
#include "pskernels.h"

namespace psk {
namespace {

// The bodies this build carries, best first.
#if defined(__x86_64__)
const KernelTable* const kBodies[] = {&avx512::kTable, &avx2::kTable, &baseline::kTable};
#else
const KernelTable* const kBodies[] = {&portable::kTable};
#endif

bool cpu_supports(const KernelTable* body) {
#if defined(__x86_64__)
  // __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state (XCR0).
  __builtin_cpu_init();
  if (body == &avx512::kTable) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
  }
  if (body == &avx2::kTable) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
  (void)body;
  return true;  // the baseline or portable body
}

const KernelTable* best_body() {
  // A function-local static: C++ makes its one-time initialization thread-safe.
  static const KernelTable* const best = [] {
    for (const KernelTable* body : kBodies) {
      if (cpu_supports(body)) return body;
    }
    return kBodies[sizeof(kBodies) / sizeof(kBodies[0]) - 1];
  }();
  return best;
}

// Set by psk_select_isa; nullptr means "auto". Relaxed is enough: the tables are constants.
std::atomic<const KernelTable*> g_forced{nullptr};

const KernelTable& body() {
  const KernelTable* forced = g_forced.load(std::memory_order_relaxed);
  return forced != nullptr ? *forced : *best_body();
}

bool valid_type(int type) { return type >= PSK_INT32 && type <= PSK_FLOAT64; }

int64_t element_size(int type) {
  return type == PSK_INT32 || type == PSK_UINT32 || type == PSK_FLOAT32 ? 4 : 8;
}

// The checks every entry point makes, in this order: type, length, then the pointers it needs.
int check(int type, int64_t n, std::initializer_list<const void*> needed) {
  if (!valid_type(type)) return PSK_EBADTYPE;
  if (n < 0) return PSK_EBADLEN;
  if (n > 0) {
    for (const void* ptr : needed) {
      if (ptr == nullptr) return PSK_ENULL;
    }
  }
  return PSK_OK;
}

}  // namespace
}  // namespace psk

using psk::body;
using psk::check;

extern "C" {

int psk_sgd(int type, void* p, const void* g, void* mom, int64_t n, double lr, double momentum,
            double decay, int nesterov, double gscale, double gclip) {
  // The momentum buffer is only read when momentum != 0 (so NaN momentum needs it too).
  const int rc = momentum != 0 ? check(type, n, {p, g, mom}) : check(type, n, {p, g});
  if (rc != PSK_OK || n == 0) return rc;
  body().sgd(type, p, g, mom, n, lr, momentum, decay, nesterov, gscale, gclip);
  return PSK_OK;
}

int psk_adam(int type, void* p, const void* g, void* m, void* v, int64_t n, double lr_t,
             double beta1, double beta2, double epsilon, double decay, double gscale,
             double gclip) {
  const int rc = check(type, n, {p, g, m, v});
  if (rc != PSK_OK || n == 0) return rc;
  body().adam(type, p, g, m, v, n, lr_t, beta1, beta2, epsilon, decay, gscale, gclip);
  return PSK_OK;
}

int psk_adagrad(int type, void* p, const void* g, void* accum, int64_t n, double lr,
                double epsilon, double decay, double gscale, double gclip) {
  const int rc = check(type, n, {p, g, accum});
  if (rc != PSK_OK || n == 0) return rc;
  body().adagrad(type, p, g, accum, n, lr, epsilon, decay, gscale, gclip);
  return PSK_OK;
}

int psk_adadelta(int type, void* p, const void* g, void* eg, void* ed, void* u, int64_t n,
                 double lr, double rho, double epsilon, double decay, double gscale,
                 double gclip) {
  const int rc = check(type, n, {p, g, eg, ed, u});
  if (rc != PSK_OK || n == 0) return rc;
  body().adadelta(type, p, g, eg, ed, u, n, lr, rho, epsilon, decay, gscale, gclip);
  return PSK_OK;
}

int psk_accumulate(int type, void* p, const void* g, int64_t n, double alpha) {
  const int rc = check(type, n, {p, g});
  if (rc != PSK_OK || n == 0) return rc;
  body().accumulate(type, p, g, n, alpha);
  return PSK_OK;
}

int psk_assign(int type, void* dst, const void* src, int64_t n) {
  const int rc = check(type, n, {dst, src});
  if (rc != PSK_OK || n == 0) return rc;
  memcpy(dst, src, static_cast<size_t>(n * psk::element_size(type)));
  return PSK_OK;
}

// The reductions also write their result for n == 0 (the empty sum, "all finite") when out is
// given, so a caller never reads an unset value; with n == 0 a NULL out is accepted like any
// other pointer.
int psk_sum_squares(int type, const void* g, int64_t n, double gclip, double scale,
                    double* out) {
  const int rc = check(type, n, {g, out});
  if (rc != PSK_OK) return rc;
  if (n == 0) {
    if (out != nullptr) *out = 0.0;
    return PSK_OK;
  }
  *out = body().sum_squares(type, g, n, gclip, scale);
  return PSK_OK;
}

int psk_all_finite(int type, const void* g, int64_t n, int* out) {
  const int rc = check(type, n, {g, out});
  if (rc != PSK_OK) return rc;
  if (n == 0) {
    if (out != nullptr) *out = 1;
    return PSK_OK;
  }
  *out = body().all_finite(type, g, n) ? 1 : 0;
  return PSK_OK;
}

const char* psk_isa_name(void) { return body().name; }

int psk_select_isa(const char* name) {
  if (name == nullptr) return PSK_EUNSUPPORTED;
  if (strcmp(name, "auto") == 0) {
    psk::g_forced.store(nullptr, std::memory_order_relaxed);
    return PSK_OK;
  }
  for (const psk::KernelTable* candidate : psk::kBodies) {
    if (strcmp(name, candidate->name) == 0) {
      if (!psk::cpu_supports(candidate)) return PSK_EUNSUPPORTED;
      psk::g_forced.store(candidate, std::memory_order_relaxed);
      return PSK_OK;
    }
  }
  return PSK_EUNSUPPORTED;  // unknown, or a body this build does not carry
}

int psk_noop(int type) {
  (void)type;
  return PSK_OK;
}

}  // extern "C"
