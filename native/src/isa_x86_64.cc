// isa_x86_64.cc: the baseline x86-64 (SSE2) body; no extra -m flags.
#if defined(__x86_64__)
#define PSK_ISA_NS baseline
#define PSK_ISA_NAME "x86-64"
#include "kernels-inl.h"
#endif
