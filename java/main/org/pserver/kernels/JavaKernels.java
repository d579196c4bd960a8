package org.pserver.kernels;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.LongBuffer;
import org.pserver.ElementType;

/**
 * The pure-Java update kernels: the same per-element operations as the native ones ({@code
 * native/include/pskernels.h}), in the same order, so results are bit-identical.
 *
 * <p>Why tiles: on JDK 17, C2 does not vectorize element loops over a direct {@link FloatBuffer}
 * (about 7x slower than a {@code float[]} loop), while it does vectorize plain array loops,
 * including {@code sqrt} and division. So every kernel moves a tile of {@value #TILE} elements of
 * each buffer into thread-local arrays with one bulk copy (a memcpy from off-heap memory), runs the
 * update on the arrays, and copies the written arrays back. The tiles stay in L1, so the extra
 * copies cost far less than the memory traffic of the update itself.
 *
 * <p>Thread-safe and allocation-free apart from a few buffer views per call; each thread gets its
 * own tiles.
 */
public final class JavaKernels implements UpdateKernels {
  /** Elements per tile: 4 float tiles of 8 KiB each stay within a 32 KiB L1 data cache. */
  static final int TILE = 2048;

  private static final ThreadLocal<Tiles> TILES = ThreadLocal.withInitial(Tiles::new);
  private static final double TWO_POW_40 = 0x1p40;
  private static final double TWO_POW_62 = 0x1p62;
  private static final double TWO_POW_65 = 0x1p65;

  /** Per-thread scratch arrays. */
  private static final class Tiles {
    final float[] p = new float[TILE];
    final float[] g = new float[TILE];
    final float[] a = new float[TILE];
    final float[] b = new float[TILE];
    final float[] c = new float[TILE];
    final double[] dp = new double[TILE];
    final double[] dg = new double[TILE];
    final double[] da = new double[TILE];
    final double[] db = new double[TILE];
    final double[] dc = new double[TILE];
    final double[] ds = new double[TILE];
    final long[] lp = new long[TILE];
    final long[] lg = new long[TILE];
    final int[] ip = new int[TILE];
  }

  @Override
  public String name() {
    return "java";
  }

  @Override
  public String toString() {
    return name();
  }

  // ---------------------------------------------------------------------------------------------
  // SGD

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
    KernelChecks.sgd(type, param, grad, momentumState, momentum, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    boolean look = nesterov && momentum != 0;
    Tiles t = TILES.get();
    if (type == ElementType.FLOAT32) {
      FloatBuffer p = floats(param), g = floats(grad), m = momentum == 0 ? null : floats(momentumState);
      float a = (float) lr, b = (float) (lr * decay), mu = (float) momentum, na = -a;
      float[] P = t.p, G = t.g, M = t.a;
      for (int done = 0; done < length; done += TILE) {
        int n = Math.min(TILE, length - done), at = offset + done;
        p.get(at, P, 0, n);
        loadGradF(g, at, n, G, gradScale, gradClip);
        if (m == null) {
          for (int i = 0; i < n; i++) {
            P[i] = P[i] + (na * G[i] - b * P[i]);
          }
        } else {
          m.get(at, M, 0, n);
          if (look) {
            for (int i = 0; i < n; i++) {
              float mi = (mu * M[i] - a * G[i]) - b * P[i];
              M[i] = mi;
              P[i] = P[i] + ((mu * mi - a * G[i]) - b * P[i]);
            }
          } else {
            for (int i = 0; i < n; i++) {
              float mi = (mu * M[i] - a * G[i]) - b * P[i];
              M[i] = mi;
              P[i] = P[i] + mi;
            }
          }
          m.put(at, M, 0, n);
        }
        p.put(at, P, 0, n);
      }
      return;
    }
    DoubleBuffer m = momentum == 0 ? null : doubles(momentumState);
    double a = lr, b = lr * decay, mu = momentum, na = -a;
    double[] P = t.dp, G = t.dg, M = t.da, S = t.ds;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      loadParamD(type, param, at, n, t);
      loadGradD(type, grad, at, n, G, gradScale, gradClip, t);
      if (m == null) {
        for (int i = 0; i < n; i++) {
          S[i] = na * G[i] - b * P[i];
        }
      } else {
        m.get(at, M, 0, n);
        for (int i = 0; i < n; i++) {
          double mi = (mu * M[i] - a * G[i]) - b * P[i];
          M[i] = mi;
          S[i] = look ? (mu * mi - a * G[i]) - b * P[i] : mi;
        }
        m.put(at, M, 0, n);
      }
      storeParamD(type, param, at, n, t);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Adam

  @Override
  public void adam(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer mState,
      ByteBuffer vState,
      int offset,
      int length,
      double lrT,
      double beta1,
      double beta2,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adam(type, param, grad, mState, vState, offset, length, gradScale, gradClip);
    if (length == 0) {
      return;
    }
    Tiles t = TILES.get();
    if (type == ElementType.FLOAT32) {
      FloatBuffer p = floats(param), g = floats(grad), m = floats(mState), v = floats(vState);
      float lt = (float) lrT, b1 = (float) beta1, c1 = (float) (1 - beta1);
      float b2 = (float) beta2, c2 = (float) (1 - beta2), e = (float) epsilon, d = (float) decay;
      float[] P = t.p, G = t.g, M = t.a, V = t.b;
      for (int done = 0; done < length; done += TILE) {
        int n = Math.min(TILE, length - done), at = offset + done;
        p.get(at, P, 0, n);
        m.get(at, M, 0, n);
        v.get(at, V, 0, n);
        loadGradF(g, at, n, G, gradScale, gradClip);
        for (int i = 0; i < n; i++) {
          float x = G[i];
          float mi = b1 * M[i] + c1 * x;
          float vi = b2 * V[i] + (c2 * x) * x;
          M[i] = mi;
          V[i] = vi;
          P[i] = P[i] + -(lt * (mi / (float) Math.sqrt(vi + e) + d * P[i]));
        }
        p.put(at, P, 0, n);
        m.put(at, M, 0, n);
        v.put(at, V, 0, n);
      }
      return;
    }
    DoubleBuffer m = doubles(mState), v = doubles(vState);
    double b1 = beta1, c1 = 1 - beta1, b2 = beta2, c2 = 1 - beta2;
    double[] P = t.dp, G = t.dg, M = t.da, V = t.db, S = t.ds;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      loadParamD(type, param, at, n, t);
      loadGradD(type, grad, at, n, G, gradScale, gradClip, t);
      m.get(at, M, 0, n);
      v.get(at, V, 0, n);
      for (int i = 0; i < n; i++) {
        double x = G[i];
        double mi = b1 * M[i] + c1 * x;
        double vi = b2 * V[i] + (c2 * x) * x;
        M[i] = mi;
        V[i] = vi;
        S[i] = -(lrT * (mi / Math.sqrt(vi + epsilon) + decay * P[i]));
      }
      m.put(at, M, 0, n);
      v.put(at, V, 0, n);
      storeParamD(type, param, at, n, t);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Adagrad

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
    Tiles t = TILES.get();
    if (type == ElementType.FLOAT32) {
      FloatBuffer p = floats(param), g = floats(grad), acc = floats(accum);
      float a = (float) lr, b = (float) (lr * decay), e = (float) epsilon;
      float[] P = t.p, G = t.g, A = t.a;
      for (int done = 0; done < length; done += TILE) {
        int n = Math.min(TILE, length - done), at = offset + done;
        p.get(at, P, 0, n);
        acc.get(at, A, 0, n);
        loadGradF(g, at, n, G, gradScale, gradClip);
        for (int i = 0; i < n; i++) {
          float x = G[i];
          float ai = A[i] + x * x;
          A[i] = ai;
          P[i] = P[i] + -((a * x) / (float) Math.sqrt(ai + e) + b * P[i]);
        }
        p.put(at, P, 0, n);
        acc.put(at, A, 0, n);
      }
      return;
    }
    DoubleBuffer acc = doubles(accum);
    double b = lr * decay;
    double[] P = t.dp, G = t.dg, A = t.da, S = t.ds;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      loadParamD(type, param, at, n, t);
      loadGradD(type, grad, at, n, G, gradScale, gradClip, t);
      acc.get(at, A, 0, n);
      for (int i = 0; i < n; i++) {
        double x = G[i];
        double ai = A[i] + x * x;
        A[i] = ai;
        S[i] = -((lr * x) / Math.sqrt(ai + epsilon) + b * P[i]);
      }
      acc.put(at, A, 0, n);
      storeParamD(type, param, at, n, t);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Adadelta

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
    Tiles t = TILES.get();
    if (type == ElementType.FLOAT32) {
      FloatBuffer p = floats(param), g = floats(grad);
      FloatBuffer eg = floats(accumGrad), ed = floats(accumDelta), u = floats(updateDelta);
      float r = (float) rho, cr = (float) (1 - rho), e = (float) epsilon;
      float a = (float) lr, b = (float) (lr * decay);
      float[] P = t.p, G = t.g, EG = t.a, ED = t.b, U = t.c;
      for (int done = 0; done < length; done += TILE) {
        int n = Math.min(TILE, length - done), at = offset + done;
        p.get(at, P, 0, n);
        eg.get(at, EG, 0, n);
        ed.get(at, ED, 0, n);
        loadGradF(g, at, n, G, gradScale, gradClip);
        for (int i = 0; i < n; i++) {
          float x = G[i];
          float egi = r * EG[i] + (cr * x) * x;
          float ui = ((float) Math.sqrt(ED[i] + e) / (float) Math.sqrt(egi + e)) * x;
          EG[i] = egi;
          U[i] = ui;
          ED[i] = r * ED[i] + (cr * ui) * ui;
          P[i] = P[i] + -(a * ui + b * P[i]);
        }
        p.put(at, P, 0, n);
        eg.put(at, EG, 0, n);
        ed.put(at, ED, 0, n);
        u.put(at, U, 0, n);
      }
      return;
    }
    DoubleBuffer eg = doubles(accumGrad), ed = doubles(accumDelta), u = doubles(updateDelta);
    double cr = 1 - rho, b = lr * decay;
    double[] P = t.dp, G = t.dg, EG = t.da, ED = t.db, U = t.dc, S = t.ds;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      loadParamD(type, param, at, n, t);
      loadGradD(type, grad, at, n, G, gradScale, gradClip, t);
      eg.get(at, EG, 0, n);
      ed.get(at, ED, 0, n);
      for (int i = 0; i < n; i++) {
        double x = G[i];
        double egi = rho * EG[i] + (cr * x) * x;
        double ui = (Math.sqrt(ED[i] + epsilon) / Math.sqrt(egi + epsilon)) * x;
        EG[i] = egi;
        U[i] = ui;
        ED[i] = rho * ED[i] + (cr * ui) * ui;
        S[i] = -(lr * ui + b * P[i]);
      }
      eg.put(at, EG, 0, n);
      ed.put(at, ED, 0, n);
      u.put(at, U, 0, n);
      storeParamD(type, param, at, n, t);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // accumulate, assign, reductions

  @Override
  public void accumulate(
      ElementType type, ByteBuffer param, ByteBuffer grad, int offset, int length, double alpha) {
    KernelChecks.accumulate(type, param, grad, offset, length);
    if (length == 0) {
      return;
    }
    Tiles t = TILES.get();
    if (type == ElementType.FLOAT32) {
      FloatBuffer p = floats(param), g = floats(grad);
      float al = (float) alpha;
      float[] P = t.p, G = t.g;
      for (int done = 0; done < length; done += TILE) {
        int n = Math.min(TILE, length - done), at = offset + done;
        p.get(at, P, 0, n);
        g.get(at, G, 0, n);
        for (int i = 0; i < n; i++) {
          P[i] = P[i] + al * G[i];
        }
        p.put(at, P, 0, n);
      }
      return;
    }
    double[] G = t.dg, S = t.ds;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      loadParamD(type, param, at, n, t);
      loadGradD(type, grad, at, n, G, 1, 0, t);
      for (int i = 0; i < n; i++) {
        S[i] = alpha * G[i];
      }
      storeParamD(type, param, at, n, t);
    }
  }

  @Override
  public void assign(ElementType type, ByteBuffer dst, ByteBuffer src, int offset, int length) {
    KernelChecks.assign(type, dst, src, offset, length);
    int bytes = length * type.size(), at = offset * type.size();
    dst.put(at, src, at, bytes);
  }

  @Override
  public double sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip, double scale) {
    KernelChecks.sumOfSquares(type, grad, offset, length, gradClip, scale);
    double[] acc = new double[8];
    Tiles t = TILES.get();
    double[] Y = t.dg;
    for (int done = 0; done < length; done += TILE) {
      int n = Math.min(TILE, length - done), at = offset + done;
      if (type == ElementType.FLOAT32) {
        float[] G = t.g;
        loadGradF(floats(grad), at, n, G, 1, gradClip);
        for (int i = 0; i < n; i++) {
          Y[i] = G[i] * scale; // in double, after the conversion; * 1 changes no bit
        }
      } else {
        // The gradient scale of the other kernels is this scale here: both are (double)clip(x) * s
        loadGradD(type, grad, at, n, Y, scale, gradClip, t);
      }
      // Lane i % 8 of the range: TILE is a multiple of 8, so tiles start at lane 0.
      int i = 0;
      for (; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; j++) {
          acc[j] += Y[i + j] * Y[i + j];
        }
      }
      for (int j = 0; i < n; i++, j++) {
        acc[j] += Y[i] * Y[i];
      }
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }

  @Override
  public boolean allFinite(ElementType type, ByteBuffer grad, int offset, int length) {
    KernelChecks.gradient(type, grad, offset, length, 0);
    if (!type.isFloat() || length == 0) {
      return true;
    }
    Tiles t = TILES.get();
    // A value is NaN or infinite iff its exponent bits are all ones; adding one to the exponent
    // field then carries into the sign bit. OR-ing those sums is a branch-free scan.
    if (type == ElementType.FLOAT32) {
      FloatBuffer g = floats(grad);
      float[] G = t.g;
      int bad = 0;
      for (int done = 0; done < length && bad >= 0; done += TILE) {
        int n = Math.min(TILE, length - done);
        g.get(offset + done, G, 0, n);
        for (int i = 0; i < n; i++) {
          bad |= (Float.floatToRawIntBits(G[i]) & 0x7F80_0000) + 0x0080_0000;
        }
      }
      return bad >= 0;
    }
    DoubleBuffer g = doubles(grad);
    double[] G = t.dg;
    long bad = 0;
    for (int done = 0; done < length && bad >= 0; done += TILE) {
      int n = Math.min(TILE, length - done);
      g.get(offset + done, G, 0, n);
      for (int i = 0; i < n; i++) {
        bad |= (Double.doubleToRawLongBits(G[i]) & 0x7FF0_0000_0000_0000L) + 0x0010_0000_0000_0000L;
      }
    }
    return bad >= 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Loading, gradient preprocessing and the integer write-back rule


  private static ByteBuffer whole(ByteBuffer b) {
    return b.slice(0, b.limit()).order(ByteOrder.nativeOrder());
  }

  private static FloatBuffer floats(ByteBuffer b) {
    return whole(b).asFloatBuffer();
  }

  private static DoubleBuffer doubles(ByteBuffer b) {
    return whole(b).asDoubleBuffer();
  }

  /** Copies float gradient elements into G, clipped and scaled as in the header's "prep". */
  private static void loadGradF(
      FloatBuffer g, int at, int n, float[] G, double gradScale, double gradClip) {
    g.get(at, G, 0, n);
    if (gradClip > 0) {
      float c = (float) gradClip, nc = -c;
      for (int i = 0; i < n; i++) {
        float x = G[i];
        G[i] = x < nc ? nc : (x > c ? c : x);
      }
    }
    if (gradScale != 1) {
      float s = (float) gradScale;
      for (int i = 0; i < n; i++) {
        G[i] = G[i] * s;
      }
    }
  }

  /** Converts gradient elements of any non-FLOAT32 type to double, clipped and scaled. */
  private static void loadGradD(
      ElementType type,
      ByteBuffer grad,
      int at,
      int n,
      double[] G,
      double gradScale,
      double gradClip,
      Tiles t) {
    toDouble(type, grad, at, n, G, t.lg, t.ip);
    if (gradClip > 0) {
      double c = gradClip, nc = -c;
      for (int i = 0; i < n; i++) {
        double x = G[i];
        G[i] = x < nc ? nc : (x > c ? c : x);
      }
    }
    if (gradScale != 1) {
      for (int i = 0; i < n; i++) {
        G[i] = G[i] * gradScale;
      }
    }
  }

  /** Loads parameter elements as doubles into t.dp, keeping integer originals in t.lp. */
  private static void loadParamD(ElementType type, ByteBuffer param, int at, int n, Tiles t) {
    toDouble(type, param, at, n, t.dp, t.lp, t.ip);
  }

  /**
   * Reads n elements of a non-FLOAT32 type at index {@code at} as doubles into D; integer values
   * are also left in L (sign- or zero-extended to long) for the exact write-back.
   */
  private static void toDouble(
      ElementType type, ByteBuffer buf, int at, int n, double[] D, long[] L, int[] I) {
    switch (type) {
      case FLOAT64 -> doubles(buf).get(at, D, 0, n);
      case INT32 -> {
        whole(buf).asIntBuffer().get(at, I, 0, n);
        for (int i = 0; i < n; i++) {
          L[i] = I[i];
          D[i] = I[i];
        }
      }
      case UINT32 -> {
        whole(buf).asIntBuffer().get(at, I, 0, n);
        for (int i = 0; i < n; i++) {
          long x = I[i] & 0xFFFF_FFFFL;
          L[i] = x;
          D[i] = x;
        }
      }
      case INT64 -> {
        whole(buf).asLongBuffer().get(at, L, 0, n);
        for (int i = 0; i < n; i++) {
          D[i] = L[i];
        }
      }
      case UINT64 -> {
        whole(buf).asLongBuffer().get(at, L, 0, n);
        for (int i = 0; i < n; i++) {
          D[i] = unsignedToDouble(L[i]);
        }
      }
      default -> throw new AssertionError(type); // FLOAT32 runs on the float path
    }
  }

  /**
   * Writes the parameter back from the step in t.ds: {@code p + s} for FLOAT64, and for the
   * integer types the exact round-half-even-and-saturate rule on the originals {@link #loadParamD}
   * left in t.lp.
   */
  private static void storeParamD(ElementType type, ByteBuffer param, int at, int n, Tiles t) {
    double[] S = t.ds;
    long[] L = t.lp;
    switch (type) {
      case FLOAT64 -> {
        double[] P = t.dp;
        for (int i = 0; i < n; i++) {
          P[i] = P[i] + S[i];
        }
        doubles(param).put(at, P, 0, n);
      }
      case INT32, UINT32 -> {
        int[] I = t.ip;
        boolean signed = type == ElementType.INT32;
        double min = signed ? Integer.MIN_VALUE : 0;
        double max = signed ? Integer.MAX_VALUE : 0xFFFF_FFFFL;
        for (int i = 0; i < n; i++) {
          I[i] = (int) combine32(L[i], S[i], min, max);
        }
        whole(param).asIntBuffer().put(at, I, 0, n);
      }
      case INT64 -> {
        for (int i = 0; i < n; i++) {
          L[i] = combineSigned64(L[i], S[i]);
        }
        whole(param).asLongBuffer().put(at, L, 0, n);
      }
      case UINT64 -> {
        for (int i = 0; i < n; i++) {
          L[i] = combineUnsigned64(L[i], S[i]);
        }
        whole(param).asLongBuffer().put(at, L, 0, n);
      }
      default -> throw new AssertionError(type);
    }
  }

  /** uint64 to double, rounded to nearest even (halve with a sticky bit, convert, double). */
  static double unsignedToDouble(long x) {
    if (x >= 0) {
      return x;
    }
    return (double) ((x >>> 1) | (x & 1)) * 2.0;
  }

  /** The header's 32-bit rule, entirely in double: round-half-even(p + s) saturated. */
  static long combine32(long p, double s, double min, double max) {
    if (s != s) {
      return p;
    }
    s = s < -TWO_POW_40 ? -TWO_POW_40 : (s > TWO_POW_40 ? TWO_POW_40 : s);
    double f = Math.floor(s);
    double fr = s - f;
    double b = (double) p + f;
    boolean up = fr > 0.5 || (fr == 0.5 && b - 2 * Math.floor(b * 0.5) != 0);
    double r = b + (up ? 1 : 0);
    r = r < min ? min : (r > max ? max : r);
    return (long) r;
  }

  /** The header's 64-bit rule for int64: round-half-even(p + s) saturated, exactly. */
  static long combineSigned64(long p, double s) {
    if (s != s) {
      return p;
    }
    s = s < -TWO_POW_65 ? -TWO_POW_65 : (s > TWO_POW_65 ? TWO_POW_65 : s);
    double f = Math.floor(s);
    double fr = s - f;
    if (Math.abs(f) < TWO_POW_62) {
      long fl = (long) f;
      long b = p + fl;
      if (((p ^ b) & (fl ^ b)) < 0) {
        return fl < 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
      }
      boolean up = fr > 0.5 || (fr == 0.5 && (b & 1) != 0);
      return up && b != Long.MAX_VALUE ? b + 1 : b;
    }
    BigInteger b = BigInteger.valueOf(p).add(new BigDecimal(f).toBigInteger());
    return saturate(b, fr, BigInteger.valueOf(Long.MIN_VALUE), BigInteger.valueOf(Long.MAX_VALUE))
        .longValue();
  }

  private static final BigInteger UINT64_MAX = BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);

  /** The header's 64-bit rule for uint64 (p holds the raw bits). */
  static long combineUnsigned64(long p, double s) {
    if (s != s) {
      return p;
    }
    s = s < -TWO_POW_65 ? -TWO_POW_65 : (s > TWO_POW_65 ? TWO_POW_65 : s);
    double f = Math.floor(s);
    double fr = s - f;
    if (Math.abs(f) < TWO_POW_62) {
      long fl = (long) f;
      long b;
      if (fl >= 0) {
        b = p + fl;
        if (Long.compareUnsigned(b, p) < 0) {
          return -1L; // above 2^64 - 1
        }
      } else {
        if (Long.compareUnsigned(p, -fl) < 0) {
          return 0; // below zero, and rounding up cannot lift it past zero
        }
        b = p + fl;
      }
      boolean up = fr > 0.5 || (fr == 0.5 && (b & 1) != 0);
      return up && b != -1L ? b + 1 : b;
    }
    BigInteger pu = new BigInteger(Long.toUnsignedString(p));
    BigInteger b = pu.add(new BigDecimal(f).toBigInteger());
    return saturate(b, fr, BigInteger.ZERO, UINT64_MAX).longValue();
  }

  private static BigInteger saturate(BigInteger b, double fr, BigInteger min, BigInteger max) {
    boolean up = fr > 0.5 || (fr == 0.5 && b.testBit(0));
    BigInteger r = up ? b.add(BigInteger.ONE) : b;
    return r.compareTo(min) < 0 ? min : (r.compareTo(max) > 0 ? max : r);
  }
}
