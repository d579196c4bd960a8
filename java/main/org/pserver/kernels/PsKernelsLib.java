package org.pserver.kernels;

import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;

/**
 * FOR INTERNAL USE ONLY: the JavaCPP binding of {@code native/include/pskernels.h}. Use {@link
 * Kernels} and {@link UpdateKernels}.
 *
 * <p>Pointers cross as plain {@code long} addresses cast in the generated glue: JavaCPP's
 * Buffer and Pointer arguments cost a few JNI field reads each per call, and these kernels take up
 * to five buffers. {@link NativeKernels} validates every argument before it calls in here.
 *
 * <p>There is deliberately no {@code static { Loader.load(); }}: loading happens in {@link
 * NativeKernels#load()}, inside a try, so a missing library means the Java fallback rather than a
 * class-initialization error.
 */
@Platform(include = "pskernels.h", link = "pskernels")
public final class PsKernelsLib {
  private PsKernelsLib() {}

  public static native int psk_sgd(
      int type,
      @Cast("void*") long p,
      @Cast("const void*") long g,
      @Cast("void*") long mom,
      @Cast("int64_t") long n,
      double lr,
      double momentum,
      double decay,
      int nesterov,
      double gscale,
      double gclip);

  public static native int psk_adam(
      int type,
      @Cast("void*") long p,
      @Cast("const void*") long g,
      @Cast("void*") long m,
      @Cast("void*") long v,
      @Cast("int64_t") long n,
      double lrT,
      double beta1,
      double beta2,
      double epsilon,
      double decay,
      double gscale,
      double gclip);

  public static native int psk_adagrad(
      int type,
      @Cast("void*") long p,
      @Cast("const void*") long g,
      @Cast("void*") long accum,
      @Cast("int64_t") long n,
      double lr,
      double epsilon,
      double decay,
      double gscale,
      double gclip);

  public static native int psk_adadelta(
      int type,
      @Cast("void*") long p,
      @Cast("const void*") long g,
      @Cast("void*") long eg,
      @Cast("void*") long ed,
      @Cast("void*") long u,
      @Cast("int64_t") long n,
      double lr,
      double rho,
      double epsilon,
      double decay,
      double gscale,
      double gclip);

  public static native int psk_accumulate(
      int type,
      @Cast("void*") long p,
      @Cast("const void*") long g,
      @Cast("int64_t") long n,
      double alpha);

  public static native int psk_assign(
      int type, @Cast("void*") long dst, @Cast("const void*") long src, @Cast("int64_t") long n);

  public static native int psk_sum_squares(
      int type,
      @Cast("const void*") long g,
      @Cast("int64_t") long n,
      double gclip,
      double scale,
      @Cast("double*") long out);

  public static native int psk_all_finite(
      int type, @Cast("const void*") long g, @Cast("int64_t") long n, @Cast("int*") long out);

  public static native @Cast("const char*") String psk_isa_name();

  public static native int psk_select_isa(@Cast("const char*") String name);

  public static native int psk_noop(int type);
}
