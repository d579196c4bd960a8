package org.pserver.kernels;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.RoundingMode;
import java.nio.ByteBuffer;
import org.pserver.ElementType;

/**
 * A deliberately plain, element-at-a-time transcription of {@code native/include/pskernels.h}
 * for tests: no tiles, no views, no shortcuts. Integer write-back uses exact decimal arithmetic
 * ({@link BigDecimal}: round half even, then saturate) rather than the header's floor-based
 * recipe, so agreement also checks that recipe.
 */
final class ReferenceKernels implements UpdateKernels {
  @Override
  public String name() {
    return "reference";
  }

  // --- element access -------------------------------------------------------------------------

  private static double getD(ElementType t, ByteBuffer b, int i) {
    return switch (t) {
      case INT32 -> b.getInt(4 * i);
      case UINT32 -> Integer.toUnsignedLong(b.getInt(4 * i));
      case INT64 -> b.getLong(8 * i);
      case UINT64 -> new BigDecimal(Long.toUnsignedString(b.getLong(8 * i))).doubleValue();
      case FLOAT32 -> b.getFloat(4 * i);
      case FLOAT64 -> b.getDouble(8 * i);
    };
  }

  private static double getS(ElementType t, ByteBuffer b, int i) {
    return t == ElementType.FLOAT32 ? b.getFloat(4 * i) : b.getDouble(8 * i);
  }

  private static void putS(ElementType t, ByteBuffer b, int i, double v) {
    if (t == ElementType.FLOAT32) {
      b.putFloat(4 * i, (float) v);
    } else {
      b.putDouble(8 * i, v);
    }
  }

  private static BigInteger exactInt(ElementType t, ByteBuffer b, int i) {
    return switch (t) {
      case INT32 -> BigInteger.valueOf(b.getInt(4 * i));
      case UINT32 -> BigInteger.valueOf(Integer.toUnsignedLong(b.getInt(4 * i)));
      case INT64 -> BigInteger.valueOf(b.getLong(8 * i));
      case UINT64 -> new BigInteger(Long.toUnsignedString(b.getLong(8 * i)));
      default -> throw new AssertionError(t);
    };
  }

  private static BigInteger min(ElementType t) {
    return switch (t) {
      case INT32 -> BigInteger.valueOf(Integer.MIN_VALUE);
      case INT64 -> BigInteger.valueOf(Long.MIN_VALUE);
      default -> BigInteger.ZERO;
    };
  }

  private static BigInteger max(ElementType t) {
    return switch (t) {
      case INT32 -> BigInteger.valueOf(Integer.MAX_VALUE);
      case UINT32 -> BigInteger.valueOf(0xFFFF_FFFFL);
      case INT64 -> BigInteger.valueOf(Long.MAX_VALUE);
      default -> BigInteger.ONE.shiftLeft(64).subtract(BigInteger.ONE);
    };
  }

  /** p[i] += s: float add for floats; exact round-half-even and saturation for integers. */
  private static void combine(ElementType t, ByteBuffer p, int i, double s) {
    switch (t) {
      case FLOAT32 -> p.putFloat(4 * i, p.getFloat(4 * i) + (float) s);
      case FLOAT64 -> p.putDouble(8 * i, p.getDouble(8 * i) + s);
      default -> {
        if (Double.isNaN(s)) {
          return;
        }
        BigInteger r;
        if (Double.isInfinite(s)) {
          r = s > 0 ? max(t) : min(t);
        } else {
          BigDecimal exact = new BigDecimal(exactInt(t, p, i)).add(new BigDecimal(s));
          r = exact.setScale(0, RoundingMode.HALF_EVEN).toBigIntegerExact();
          r = r.max(min(t)).min(max(t));
        }
        if (t.size() == 4) {
          p.putInt(4 * i, r.intValue());
        } else {
          p.putLong(8 * i, r.longValue());
        }
      }
    }
  }

  /** Gradient element after clip and scale, in the compute type (float for FLOAT32). */
  private static double prep(ElementType t, ByteBuffer g, int i, double scale, double clip) {
    if (t == ElementType.FLOAT32) {
      float x = g.getFloat(4 * i);
      if (clip > 0) {
        float c = (float) clip;
        if (x < -c) {
          x = -c;
        } else if (x > c) {
          x = c;
        }
      }
      if (scale != 1) {
        x = x * (float) scale;
      }
      return x;
    }
    double x = getD(t, g, i);
    if (clip > 0) {
      if (x < -clip) {
        x = -clip;
      } else if (x > clip) {
        x = clip;
      }
    }
    if (scale != 1) {
      x = x * scale;
    }
    return x;
  }

  private static boolean f32(ElementType t) {
    return t == ElementType.FLOAT32;
  }

  // --- kernels --------------------------------------------------------------------------------

  @Override
  public void sgd(
      ElementType t,
      ByteBuffer p,
      ByteBuffer g,
      ByteBuffer mom,
      int off,
      int len,
      double lr,
      double momentum,
      double decay,
      boolean nesterov,
      double scale,
      double clip) {
    for (int i = off; i < off + len; i++) {
      double x = prep(t, g, i, scale, clip);
      double s;
      if (f32(t)) {
        float a = (float) lr, b = (float) (lr * decay), mu = (float) momentum;
        float xf = (float) x, pc = p.getFloat(4 * i), vel;
        if (momentum == 0) {
          vel = (-a) * xf - b * pc;
        } else {
          vel = (mu * mom.getFloat(4 * i) - a * xf) - b * pc;
          mom.putFloat(4 * i, vel);
        }
        s = nesterov && momentum != 0 ? (mu * vel - a * xf) - b * pc : vel;
      } else {
        double pc = getD(t, p, i), vel;
        if (momentum == 0) {
          vel = (-lr) * x - (lr * decay) * pc;
        } else {
          vel = (momentum * mom.getDouble(8 * i) - lr * x) - (lr * decay) * pc;
          mom.putDouble(8 * i, vel);
        }
        s = nesterov && momentum != 0 ? (momentum * vel - lr * x) - (lr * decay) * pc : vel;
      }
      combine(t, p, i, s);
    }
  }

  @Override
  public void adam(
      ElementType t,
      ByteBuffer p,
      ByteBuffer g,
      ByteBuffer m,
      ByteBuffer v,
      int off,
      int len,
      double lrT,
      double beta1,
      double beta2,
      double eps,
      double decay,
      double scale,
      double clip) {
    for (int i = off; i < off + len; i++) {
      double x = prep(t, g, i, scale, clip);
      double s;
      if (f32(t)) {
        float xf = (float) x, pc = p.getFloat(4 * i);
        float mi = (float) beta1 * m.getFloat(4 * i) + (float) (1 - beta1) * xf;
        float vi = (float) beta2 * v.getFloat(4 * i) + ((float) (1 - beta2) * xf) * xf;
        m.putFloat(4 * i, mi);
        v.putFloat(4 * i, vi);
        s = -((float) lrT * (mi / (float) Math.sqrt(vi + (float) eps) + (float) decay * pc));
      } else {
        double pc = getD(t, p, i);
        double mi = beta1 * m.getDouble(8 * i) + (1 - beta1) * x;
        double vi = beta2 * v.getDouble(8 * i) + ((1 - beta2) * x) * x;
        m.putDouble(8 * i, mi);
        v.putDouble(8 * i, vi);
        s = -(lrT * (mi / Math.sqrt(vi + eps) + decay * pc));
      }
      combine(t, p, i, s);
    }
  }

  @Override
  public void adagrad(
      ElementType t,
      ByteBuffer p,
      ByteBuffer g,
      ByteBuffer acc,
      int off,
      int len,
      double lr,
      double eps,
      double decay,
      double scale,
      double clip) {
    for (int i = off; i < off + len; i++) {
      double x = prep(t, g, i, scale, clip);
      double s;
      if (f32(t)) {
        float xf = (float) x, pc = p.getFloat(4 * i);
        float ai = acc.getFloat(4 * i) + xf * xf;
        acc.putFloat(4 * i, ai);
        s = -(((float) lr * xf) / (float) Math.sqrt(ai + (float) eps) + (float) (lr * decay) * pc);
      } else {
        double pc = getD(t, p, i);
        double ai = acc.getDouble(8 * i) + x * x;
        acc.putDouble(8 * i, ai);
        s = -((lr * x) / Math.sqrt(ai + eps) + (lr * decay) * pc);
      }
      combine(t, p, i, s);
    }
  }

  @Override
  public void adadelta(
      ElementType t,
      ByteBuffer p,
      ByteBuffer g,
      ByteBuffer eg,
      ByteBuffer ed,
      ByteBuffer u,
      int off,
      int len,
      double lr,
      double rho,
      double eps,
      double decay,
      double scale,
      double clip) {
    for (int i = off; i < off + len; i++) {
      double x = prep(t, g, i, scale, clip);
      double s;
      if (f32(t)) {
        float xf = (float) x, pc = p.getFloat(4 * i), r = (float) rho, cr = (float) (1 - rho);
        float e = (float) eps;
        float egi = r * eg.getFloat(4 * i) + (cr * xf) * xf;
        float ui = ((float) Math.sqrt(ed.getFloat(4 * i) + e) / (float) Math.sqrt(egi + e)) * xf;
        float edi = r * ed.getFloat(4 * i) + (cr * ui) * ui;
        eg.putFloat(4 * i, egi);
        u.putFloat(4 * i, ui);
        ed.putFloat(4 * i, edi);
        s = -((float) lr * ui + (float) (lr * decay) * pc);
      } else {
        double pc = getD(t, p, i);
        double egi = rho * getS(t, eg, i) + ((1 - rho) * x) * x;
        double ui = (Math.sqrt(getS(t, ed, i) + eps) / Math.sqrt(egi + eps)) * x;
        double edi = rho * getS(t, ed, i) + ((1 - rho) * ui) * ui;
        putS(t, eg, i, egi);
        putS(t, u, i, ui);
        putS(t, ed, i, edi);
        s = -(lr * ui + (lr * decay) * pc);
      }
      combine(t, p, i, s);
    }
  }

  @Override
  public void accumulate(ElementType t, ByteBuffer p, ByteBuffer g, int off, int len, double alpha) {
    for (int i = off; i < off + len; i++) {
      double s = f32(t) ? (float) alpha * g.getFloat(4 * i) : alpha * getD(t, g, i);
      combine(t, p, i, s);
    }
  }

  @Override
  public void assign(ElementType t, ByteBuffer dst, ByteBuffer src, int off, int len) {
    for (int i = off * t.size(); i < (off + len) * t.size(); i++) {
      dst.put(i, src.get(i));
    }
  }

  @Override
  public double sumOfSquares(
      ElementType t, ByteBuffer g, int off, int len, double clip, double scale) {
    double[] acc = new double[8];
    for (int i = 0; i < len; i++) {
      double y = prep(t, g, off + i, 1, clip) * scale;
      acc[i % 8] += y * y;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }

  @Override
  public boolean allFinite(ElementType t, ByteBuffer g, int off, int len) {
    for (int i = off; i < off + len; i++) {
      if (t.isFloat() && !Double.isFinite(getD(t, g, i))) {
        return false;
      }
    }
    return true;
  }
}
