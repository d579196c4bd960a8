// kernel_table.h: the table of kernel entry points that each per-ISA translation unit exports.
#ifndef PSK_KERNEL_TABLE_H_
#define PSK_KERNEL_TABLE_H_

#include <stdint.h>

namespace psk {

// Entry points of one instruction-set body. dispatch.cc has already validated the type, the length
// and the pointers, so these only compute. Signatures mirror the C API in pskernels.h.
struct KernelTable {
  const char* name;
  void (*sgd)(int type, void* p, const void* g, void* mom, int64_t n, double lr, double momentum,
              double decay, int nesterov, double gscale, double gclip);
  void (*adam)(int type, void* p, const void* g, void* m, void* v, int64_t n, double lr_t,
               double beta1, double beta2, double epsilon, double decay, double gscale,
               double gclip);
  void (*adagrad)(int type, void* p, const void* g, void* accum, int64_t n, double lr,
                  double epsilon, double decay, double gscale, double gclip);
  void (*adadelta)(int type, void* p, const void* g, void* eg, void* ed, void* u, int64_t n,
                   double lr, double rho, double epsilon, double decay, double gscale,
                   double gclip);
  void (*accumulate)(int type, void* p, const void* g, int64_t n, double alpha);
  double (*sum_squares)(int type, const void* g, int64_t n, double gclip, double scale);
  bool (*all_finite)(int type, const void* g, int64_t n);
};

// One table per compiled body; which ones exist depends on the target architecture.
#if defined(__x86_64__)
namespace avx512 { extern const KernelTable kTable; }
namespace avx2 { extern const KernelTable kTable; }
namespace baseline { extern const KernelTable kTable; }
#else
namespace portable { extern const KernelTable kTable; }
#endif

}  // namespace psk

#endif  // PSK_KERNEL_TABLE_H_
