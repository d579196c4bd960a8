package org.pserver.kernels;

import java.nio.ByteBuffer;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.Loader;
import org.pserver.ElementType;

/**
 * The SIMD C++ kernels through JavaCPP. Obtain it from {@link Kernels}; {@link #load()} loads the
 * library, applies an instruction-set override and refuses to return an instance that fails the
 * known-answer self-test.
 *
 * <p>Every call validates its arguments in Java (the same checks as {@link JavaKernels}), then
 * passes raw addresses: the kernels run on the buffers' memory in place.
 */
final class NativeKernels implements UpdateKernels {

  /** Per-thread native cells for the two out-parameters (allocated once, freed with the thread). */
  private static final ThreadLocal<DoublePointer> DOUBLE_OUT =
      ThreadLocal.withInitial(() -> new DoublePointer(1));

  private static final ThreadLocal<IntPointer> INT_OUT =
      ThreadLocal.withInitial(() -> new IntPointer(1));

  private final String isa;

  private NativeKernels(String isa) {
    this.isa = isa;
  }

  /**
   * Loads the native library, selects the instruction set named by {@code isa} ({@code null} or
   * "auto": the best the CPU has) and runs the self-test.
   *
   * @throws Throwable whatever stopped it: {@link UnsatisfiedLinkError} when the library is not
   *     there, {@link IllegalStateException} for an unsupported ISA or a failed self-test
   */
  static NativeKernels load(String isa) throws Throwable {
    Loader.load(PsKernelsLib.class);
    if (isa != null && !isa.isBlank()) {
      int rc = PsKernelsLib.psk_select_isa(isa.trim().toLowerCase(java.util.Locale.ROOT));
      if (rc != 0) {
        throw new IllegalStateException(
            "instruction set '" + isa + "' is not available on this CPU or build");
      }
    }
    NativeKernels k = new NativeKernels(PsKernelsLib.psk_isa_name());
    KnownAnswers.check(k);
    return k;
  }

  /** The instruction set in use: "avx512", "avx2", "x86-64" or "portable". */
  String isa() {
    return isa;
  }

  @Override
  public String name() {
    return "native (" + isa + ")";
  }

  @Override
  public String toString() {
    return name();
  }

  private static long at(ByteBuffer b, int offset, int elemSize) {
    return b == null ? 0 : BufferAddress.of(b) + (long) offset * elemSize;
  }

  private static void ok(int rc, String kernel) {
    if (rc != 0) {
      // Unreachable after the Java-side checks; a failure here is a bug, not bad input.
      throw new IllegalStateException(kernel + " failed with native status " + rc);
    }
  }

  @Override
  public void sgd(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer momentumState,
      int offset,
      int length,
      double lr,
      double momentum,
      double decay,
      boolean nesterov,
      double gradScale,
      double gradClip) {
    boolean hasState = momentum != 0;
    KernelChecks.sgd(type, param, grad, momentumState, momentum, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    int es = type.size(), ss = type.stateSize();
    ok(
        PsKernelsLib.psk_sgd(
            type.code(),
            at(param, offset, es),
            at(grad, offset, es),
            hasState ? at(momentumState, offset, ss) : 0,
            length,
            lr,
            momentum,
            decay,
            nesterov ? 1 : 0,
            gradScale,
            gradClip),
        "psk_sgd");
  }

  @Override
  public void adam(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer m,
      ByteBuffer v,
      int offset,
      int length,
      double lrT,
      double beta1,
      double beta2,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adam(type, param, grad, m, v, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    int es = type.size(), ss = type.stateSize();
    ok(
        PsKernelsLib.psk_adam(
            type.code(),
            at(param, offset, es),
            at(grad, offset, es),
            at(m, offset, ss),
            at(v, offset, ss),
            length,
            lrT,
            beta1,
            beta2,
            epsilon,
            decay,
            gradScale,
            gradClip),
        "psk_adam");
  }

  @Override
  public void adagrad(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer accum,
      int offset,
      int length,
      double lr,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adagrad(type, param, grad, accum, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    int es = type.size(), ss = type.stateSize();
    ok(
        PsKernelsLib.psk_adagrad(
            type.code(),
            at(param, offset, es),
            at(grad, offset, es),
            at(accum, offset, ss),
            length,
            lr,
            epsilon,
            decay,
            gradScale,
            gradClip),
        "psk_adagrad");
  }

  @Override
  public void adadelta(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer accumGrad,
      ByteBuffer accumDelta,
      ByteBuffer updateDelta,
      int offset,
      int length,
      double lr,
      double rho,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adadelta(
        type, param, grad, accumGrad, accumDelta, updateDelta, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    int es = type.size(), ss = type.stateSize();
    ok(
        PsKernelsLib.psk_adadelta(
            type.code(),
            at(param, offset, es),
            at(grad, offset, es),
            at(accumGrad, offset, ss),
            at(accumDelta, offset, ss),
            at(updateDelta, offset, ss),
            length,
            lr,
            rho,
            epsilon,
            decay,
            gradScale,
            gradClip),
        "psk_adadelta");
  }

  @Override
  public void accumulate(
      ElementType type, ByteBuffer param, ByteBuffer grad, int offset, int length, double alpha) {
    KernelChecks.accumulate(type, param, grad, offset, length);
    if (length == 0) {
      return;
    }
    int es = type.size();
    ok(
        PsKernelsLib.psk_accumulate(
            type.code(), at(param, offset, es), at(grad, offset, es), length, alpha),
        "psk_accumulate");
  }

  @Override
  public void assign(ElementType type, ByteBuffer dst, ByteBuffer src, int offset, int length) {
    KernelChecks.assign(type, dst, src, offset, length);
    if (length == 0) {
      return;
    }
    int es = type.size();
    ok(
        PsKernelsLib.psk_assign(type.code(), at(dst, offset, es), at(src, offset, es), length),
        "psk_assign");
  }

  @Override
  public double sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip, double scale) {
    KernelChecks.sumOfSquares(type, grad, offset, length, gradClip, scale);
    DoublePointer out = DOUBLE_OUT.get();
    ok(
        PsKernelsLib.psk_sum_squares(
            type.code(), at(grad, offset, type.size()), length, gradClip, scale, out.address()),
        "psk_sum_squares");
    return out.get();
  }

  @Override
  public boolean allFinite(ElementType type, ByteBuffer grad, int offset, int length) {
    KernelChecks.gradient(type, grad, offset, length, 0);
    if (!type.isFloat() || length == 0) {
      return true;
    }
    IntPointer out = INT_OUT.get();
    ok(
        PsKernelsLib.psk_all_finite(
            type.code(), at(grad, offset, type.size()), length, out.address()),
        "psk_all_finite");
    return out.get() != 0;
  }

  /** An empty call through the binding, for measuring its cost. */
  int noop() {
    return PsKernelsLib.psk_noop(0);
  }
}
