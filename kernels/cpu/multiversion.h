// QUANTD_MULTIVERSION: on x86-64 Linux with GCC, compile the marked function twice — for
// AVX2+FMA (Haswell and later) and for the baseline — and pick one at load time (ifunc).
// Elsewhere it expands to nothing. Results may differ in the last bits between the two (FMA).
#ifndef QUANTD_KERNELS_CPU_MULTIVERSION_H_
#define QUANTD_KERNELS_CPU_MULTIVERSION_H_

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define QUANTD_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define QUANTD_MULTIVERSION
#endif

#endif  // QUANTD_KERNELS_CPU_MULTIVERSION_H_
