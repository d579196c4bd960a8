package org.pserver.kernels;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Objects;
import org.pserver.ElementType;

/** Argument checks shared by both implementations, so both reject exactly the same calls. */
final class KernelChecks {
  private KernelChecks() {}

  /** Checks offset and length, which every call shares. */
  static void range(ElementType type, int offset, int length) {
    Objects.requireNonNull(type, "type");
    if (offset < 0 || length < 0) {
      throw new IllegalArgumentException(
          "offset and length must be >= 0, got offset " + offset + ", length " + length);
    }
  }

  /**
   * Checks that {@code buf} is direct, native-order and holds elements {@code [offset,
   * offset+length)} of {@code elemSize} bytes within its limit.
   */
  static void buffer(
      String what, ByteBuffer buf, int elemSize, int offset, int length, boolean written) {
    if (buf == null) {
      throw new IllegalArgumentException(what + " buffer is null");
    }
    if (!buf.isDirect()) {
      throw new IllegalArgumentException(
          what + " buffer must be direct (off-heap); heap buffers cannot be updated in place");
    }
    if (buf.order() != ByteOrder.nativeOrder()) {
      throw new IllegalArgumentException(
          what + " buffer must be in native byte order (" + ByteOrder.nativeOrder() + ")");
    }
    if (written && buf.isReadOnly()) {
      throw new IllegalArgumentException(what + " buffer is read-only");
    }
    long end = ((long) offset + length) * elemSize;
    if (end > buf.limit()) {
      throw new IllegalArgumentException(
          what
              + " buffer too small: elements ["
              + offset
              + ", "
              + ((long) offset + length)
              + ") of "
              + elemSize
              + " bytes need "
              + end
              + " bytes, limit is "
              + buf.limit());
    }
  }

  static void clip(double gradScale, double gradClip) {
    if (!(gradClip >= 0)) {
      throw new IllegalArgumentException("gradClip must be >= 0 (0 = off), got " + gradClip);
    }
    if (Double.isNaN(gradScale)) {
      throw new IllegalArgumentException("gradScale must not be NaN");
    }
  }

  /** The checks of an optimizer kernel: parameter, gradient and each state buffer. */
  private static void update(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      int offset,
      int length,
      double gradScale,
      double gradClip,
      String[] stateNames,
      ByteBuffer... state) {
    range(type, offset, length);
    buffer("parameter", param, type.size(), offset, length, true);
    buffer("gradient", grad, type.size(), offset, length, false);
    for (int i = 0; i < state.length; i++) {
      buffer(stateNames[i], state[i], type.stateSize(), offset, length, true);
    }
    clip(gradScale, gradClip);
  }

  private static final String[] NONE = {};
  private static final String[] MOMENTUM = {"momentum"};
  private static final String[] ADAM = {"m", "v"};
  private static final String[] ADAGRAD = {"accumulator"};
  private static final String[] ADADELTA = {"accum_gradient", "accum_delta", "update_delta"};

  static void sgd(ElementType type, ByteBuffer param, ByteBuffer grad, ByteBuffer momentumState,
      double momentum, int offset, int length, double gradScale, double gradClip) {
    if (momentum == 0) {
      update(type, param, grad, offset, length, gradScale, gradClip, NONE);
    } else {
      update(type, param, grad, offset, length, gradScale, gradClip, MOMENTUM, momentumState);
    }
  }

  static void adam(ElementType type, ByteBuffer param, ByteBuffer grad, ByteBuffer m, ByteBuffer v,
      int offset, int length, double gradScale, double gradClip) {
    update(type, param, grad, offset, length, gradScale, gradClip, ADAM, m, v);
  }

  static void adagrad(ElementType type, ByteBuffer param, ByteBuffer grad, ByteBuffer accum,
      int offset, int length, double gradScale, double gradClip) {
    update(type, param, grad, offset, length, gradScale, gradClip, ADAGRAD, accum);
  }

  static void adadelta(ElementType type, ByteBuffer param, ByteBuffer grad, ByteBuffer eg,
      ByteBuffer ed, ByteBuffer u, int offset, int length, double gradScale, double gradClip) {
    update(type, param, grad, offset, length, gradScale, gradClip, ADADELTA, eg, ed, u);
  }

  static void accumulate(ElementType type, ByteBuffer param, ByteBuffer grad, int offset, int length) {
    update(type, param, grad, offset, length, 1, 0, NONE);
  }

  static void assign(ElementType type, ByteBuffer dst, ByteBuffer src, int offset, int length) {
    range(type, offset, length);
    buffer("destination", dst, type.size(), offset, length, true);
    buffer("source", src, type.size(), offset, length, false);
  }

  /** The checks of sumOfSquares: those of {@link #gradient}, and a finite, positive scale. */
  static void sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip, double scale) {
    gradient(type, grad, offset, length, gradClip);
    if (!(scale > 0) || Double.isInfinite(scale)) {
      throw new IllegalArgumentException("scale must be finite and > 0, got " + scale);
    }
  }

  /** The checks of a read-only pass over a gradient (sumOfSquares, allFinite). */
  static void gradient(ElementType type, ByteBuffer grad, int offset, int length, double gradClip) {
    range(type, offset, length);
    buffer("gradient", grad, type.size(), offset, length, false);
    clip(1, gradClip);
  }
}
