package org.pserver.kernels;

import java.nio.ByteBuffer;
import org.pserver.ElementType;

/**
 * In-place optimizer update kernels: the only place where pserver does update math.
 *
 * <p>Two implementations exist: the SIMD C++ kernels bound through JavaCPP ({@code native}) and a
 * pure-Java fallback ({@code java}). {@link Kernels#get()} picks one at start-up. Both follow the
 * per-element contract written in {@code native/include/pskernels.h} operation for operation and
 * give bit-identical results for every element type; that header is the specification of every
 * method below.
 *
 * <h2>Buffers</h2>
 *
 * <ul>
 *   <li>Every buffer must be a <b>direct</b> {@link ByteBuffer} in {@link
 *       java.nio.ByteOrder#nativeOrder() native order}: the native kernels work on the memory in
 *       place, with no copy. Heap buffers and wrong byte order are rejected.
 *   <li>{@code offset} and {@code length} count <em>elements</em>, and address every buffer of the
 *       call absolutely from its index 0: buffer positions are ignored, limits are checked. The
 *       parameter and gradient hold elements of {@code type}; optimizer state holds {@link
 *       ElementType#stateSize()}-byte elements (float for FLOAT32, double otherwise).
 *   <li>The gradient is only read. Parameter and state are updated in place.
 *   <li>Buffers of one call must not overlap; if they do, the result is undefined (and the two
 *       implementations may disagree).
 * </ul>
 *
 * <h2>Errors</h2>
 *
 * Bad arguments (heap or wrong-order buffer, a range beyond a buffer's limit, negative offset or
 * length, a negative or NaN clip, a missing state buffer) throw {@link IllegalArgumentException}
 * before any element is read or written.
 *
 * <h2>Threads</h2>
 *
 * Implementations are stateless and thread-safe. Calls on disjoint ranges may run concurrently;
 * calls that touch the same elements must be serialized by the caller.
 *
 * <h2>Gradient preprocessing</h2>
 *
 * Every optimizer kernel first clips each gradient element to {@code [-gradClip, gradClip]}
 * ({@code gradClip == 0}: no clipping) and then multiplies it by {@code gradScale} ({@code 1}: no
 * scaling), without writing the gradient. {@link #sumOfSquares} gives the squared L2 norm a caller
 * needs to derive {@code gradScale} for norm clipping.
 *
 * <h2>Precision</h2>
 *
 * FLOAT32 parameters are computed in float: float coefficients (each derived in double, then
 * rounded once per call) and a float rounding after every operation. FLOAT64 and the integer
 * types compute in double. Trap: this is not the Go seed's float32 arithmetic, which evaluated
 * each expression in double and rounded once per assignment, so a float32 result may differ from
 * the seed's by a few float ulps per step. It is deliberate: twice the SIMD lanes per
 * instruction, and both implementations reproduce it bit for bit.
 */
public interface UpdateKernels {

  /** A short description for logs, e.g. {@code "native (avx512)"} or {@code "java"}. */
  String name();

  /**
   * SGD with optional momentum, Nesterov and weight decay ({@code psk_sgd}).
   *
   * @param momentumState momentum buffer; may be {@code null} when {@code momentum == 0}
   * @param lr learning rate for this step
   * @param momentum momentum coefficient (0: plain SGD, no state)
   * @param decay L2 weight decay, scaled by {@code lr}
   * @param nesterov Nesterov momentum (no effect when {@code momentum == 0})
   */
  void sgd(
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
      double gradClip);

  /**
   * Adam ({@code psk_adam}); epsilon inside the square root and decay scaled by {@code lrT}, as in
   * the Go seed.
   *
   * @param lrT the bias-corrected rate {@code lr * sqrt(1 - beta2^t) / (1 - beta1^t)} of step t
   */
  void adam(
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
      double gradClip);

  /** Adagrad ({@code psk_adagrad}), descending (the seed's sign bug is fixed). */
  void adagrad(
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
      double gradClip);

  /**
   * Adadelta as in the Go seed ({@code psk_adadelta}), with the three state buffers {@code
   * accum_gradient}, {@code accum_delta} and {@code update_delta}.
   */
  void adadelta(
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
      double gradClip);

  /**
   * {@code param += alpha * grad} ({@code psk_accumulate}). Integer types round half to even and
   * saturate, so {@code alpha == 1} adds integers exactly.
   */
  void accumulate(
      ElementType type, ByteBuffer param, ByteBuffer grad, int offset, int length, double alpha);

  /** {@code dst = src} for {@code length} elements ({@code psk_assign}). */
  void assign(ElementType type, ByteBuffer dst, ByteBuffer src, int offset, int length);

  /**
   * The sum of squares of the gradient after element clipping, in double, in the fixed order
   * of {@code psk_sum_squares} (so both implementations return the same bits): each clipped
   * element is converted to double and multiplied by {@code scale} before it is squared.
   *
   * <p>{@code scale} 1 is the plain sum. Trap: for FLOAT64 the plain sum overflows to +Inf once
   * the L2 norm exceeds about 1.3e154, although every element is finite (no other type can get
   * there). Then call again with a small power of two, e.g. 2^-600, which keeps any gradient's
   * sum finite, and divide the norm by it.
   *
   * @param scale finite and {@code > 0}; a power of two rounds nothing extra
   * @throws IllegalArgumentException for a bad buffer or range, a negative or NaN {@code
   *     gradClip}, or a {@code scale} that is not finite and {@code > 0}
   */
  double sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip, double scale);

  /** {@link #sumOfSquares(ElementType, ByteBuffer, int, int, double, double)} with scale 1. */
  default double sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip) {
    return sumOfSquares(type, grad, offset, length, gradClip, 1);
  }

  /** True if no element is NaN or infinite; always true for integer types. */
  boolean allFinite(ElementType type, ByteBuffer grad, int offset, int length);
}
