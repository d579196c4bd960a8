// isa_avx512.cc: the AVX-512 body (F, DQ, BW, VL; CMake adds the -mavx512* flags and -mfma).
#if defined(__x86_64__)
#define PSK_ISA_NS avx512
#define PSK_ISA_NAME "avx512"
#include "kernels-inl.h"
#endif
