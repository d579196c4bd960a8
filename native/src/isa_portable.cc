// isa_portable.cc: the only body on non-x86 targets (e.g. aarch64), built with the default flags.
#if !defined(__x86_64__)
#define PSK_ISA_NS portable
#define PSK_ISA_NAME "portable"
#include "kernels-inl.h"
#endif
