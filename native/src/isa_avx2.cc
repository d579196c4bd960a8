// isa_avx2.cc: the AVX2 body; CMake adds -mavx2 -mfma.
#if defined(__x86_64__)
#define PSK_ISA_NS avx2
#define PSK_ISA_NAME "avx2"
#include "kernels-inl.h"
#endif
