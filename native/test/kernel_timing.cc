// kernel_timing.cc: prints GB/s of each float32 kernel per instruction-set body next to a triad.
//
// Not a test: run it by hand on a quiet machine (build/kernel_timing [reps]). Bytes counted are
// the ones a kernel must move (each array read or written once per element), so the figures are
// comparable with the in-place triad a[i] += s * b[i] (12 bytes per element) compiled for the same
// instruction set.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <functional>
#include <vector>

#include "pskernels.h"

namespace {

// The reference triad, once per instruction set (target attributes, so one TU is enough).
#define PSK_TRIAD(name, attr)                                                            \
  attr void name(float* __restrict a, const float* __restrict b, float s, int64_t n) { \
    for (int64_t i = 0; i < n; ++i) a[i] += s * b[i];                                   \
  }
#if defined(__x86_64__)
PSK_TRIAD(triad_avx512,
          __attribute__((target("avx512f,avx512vl,fma,prefer-vector-width=512"), noinline)))
PSK_TRIAD(triad_avx2, __attribute__((target("avx2,fma"), noinline)))
#endif
PSK_TRIAD(triad_base, __attribute__((noinline)))

using Triad = void (*)(float*, const float*, float, int64_t);

Triad triad_for(const char* isa) {
#if defined(__x86_64__)
  if (strcmp(isa, "avx512") == 0) return triad_avx512;
  if (strcmp(isa, "avx2") == 0) return triad_avx2;
#endif
  (void)isa;
  return triad_base;
}

// Float arrays that start on a cache line, so the triad runs at its best (the kernels align their
// main loop on the parameter themselves) and no load or store straddles two lines. Each array
// also starts `skew` lines past a page boundary: arrays at the same offset within their pages
// make a[i] and b[i] alias in the 4 KiB store-forwarding check, which slows the triad and the
// kernels by varying amounts from run to run.
struct AlignedFloats {
  void* block;
  float* data;
  AlignedFloats(int64_t n, int skew, float value)
      : block(aligned_alloc(4096, (static_cast<size_t>(n) * 4 + 4096 + 4095) / 4096 * 4096)),
        data(static_cast<float*>(block) + 16 * skew) {
    for (int64_t i = 0; i < n; ++i) data[i] = value;
  }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
  ~AlignedFloats() { free(block); }
};

// The buffers of one size, with values that keep every kernel in the normal range.
struct Arrays {
  AlignedFloats p, g, s1, s2, s3;
  explicit Arrays(int64_t n)
      : p(n, 0, 0.5f), g(n, 5, 0.01f), s1(n, 10, 0.1f), s2(n, 15, 0.1f), s3(n, 20, 0.1f) {}
};

// Seconds per call of fn, timed over `inner` back-to-back calls.
double sample_seconds(const std::function<void()>& fn, int inner) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < inner; ++i) fn();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(t1 - t0).count() / inner;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 7;
  const int64_t sizes[] = {int64_t{1} << 16, int64_t{1} << 24};

  struct Kernel {
    const char* name;
    double bytes;  // per element
    std::function<void(Arrays&, int64_t)> run;
  };
  const std::vector<Kernel> kernels = {
      {"sgd", 12,
       [](Arrays& a, int64_t n) {
         psk_sgd(PSK_FLOAT32, a.p.data, a.g.data, nullptr, n, 0.01, 0, 0, 0, 1, 0);
       }},
      {"sgd+mom", 20,
       [](Arrays& a, int64_t n) {
         psk_sgd(PSK_FLOAT32, a.p.data, a.g.data, a.s1.data, n, 0.01, 0.9, 0, 0, 1, 0);
       }},
      {"adam", 28,
       [](Arrays& a, int64_t n) {
         psk_adam(PSK_FLOAT32, a.p.data, a.g.data, a.s1.data, a.s2.data, n, 0.001, 0.9,
                  0.999, 1e-8, 0, 1, 0);
       }},
      {"adam+clip", 28,
       [](Arrays& a, int64_t n) {
         psk_adam(PSK_FLOAT32, a.p.data, a.g.data, a.s1.data, a.s2.data, n, 0.001, 0.9,
                  0.999, 1e-8, 0.01, 0.5, 1.0);
       }},
      {"adagrad", 20,
       [](Arrays& a, int64_t n) {
         psk_adagrad(PSK_FLOAT32, a.p.data, a.g.data, a.s1.data, n, 0.01, 1e-6, 0, 1, 0);
       }},
      {"adadelta", 32,
       [](Arrays& a, int64_t n) {
         psk_adadelta(PSK_FLOAT32, a.p.data, a.g.data, a.s1.data, a.s2.data, a.s3.data,
                      n, 1, 0.95, 1e-6, 0, 1, 0);
       }},
      {"accumulate", 12,
       [](Arrays& a, int64_t n) { psk_accumulate(PSK_FLOAT32, a.p.data, a.g.data, n, 1e-3); }},
      {"sum_squares", 4,
       [](Arrays& a, int64_t n) {
         double out;
         psk_sum_squares(PSK_FLOAT32, a.g.data, n, 0, 1, &out);
       }},
  };

  printf("GB/s, float32, best of %d rounds; ratio = kernel GB/s / triad GB/s\n", reps);
  for (const char* isa : {"avx512", "avx2", "x86-64", "portable"}) {
    if (psk_select_isa(isa) != PSK_OK) continue;
    const Triad triad = triad_for(isa);
    for (int64_t n : sizes) {
      Arrays a(n);
      // Enough calls per sample that even the small size runs for milliseconds.
      const int inner = static_cast<int>(n >= (1 << 20) ? 1 : (int64_t{1} << 25) / n);
      std::vector<std::function<void()>> runs = {[&] { triad(a.p.data, a.g.data, 1e-3f, n); }};
      std::vector<double> bytes = {12};
      for (const Kernel& k : kernels) {
        runs.push_back([&] { k.run(a, n); });
        bytes.push_back(k.bytes);
      }
      // Rounds interleave all kernels, so a slow spell of this (virtual) machine hits each of
      // them alike; each kernel keeps its best round.
      std::vector<double> best(runs.size(), 1e30);
      for (auto& run : runs) run();  // warm up: page faults, caches
      for (int r = 0; r < reps; ++r) {
        for (size_t k = 0; k < runs.size(); ++k) {
          const double s = sample_seconds(runs[k], inner);
          if (s < best[k]) best[k] = s;
        }
      }
      const double triad_gbs = bytes[0] * n / best[0] / 1e9;
      printf("%-8s n=%-9lld %-12s %7.1f GB/s\n", isa, (long long)n, "triad", triad_gbs);
      for (size_t k = 1; k < runs.size(); ++k) {
        const double gbs = bytes[k] * n / best[k] / 1e9;
        printf("%-8s n=%-9lld %-12s %7.1f GB/s  %.2fx\n", isa, (long long)n, kernels[k - 1].name,
               gbs, gbs / triad_gbs);
      }
    }
  }
  psk_select_isa("auto");
  return 0;
}
