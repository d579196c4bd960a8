package org.pserver.optimizer;

import org.pserver.ElementType;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;

/**
 * A straightforward double-precision model of {@link ParameterOptimizer}, written from the spec
 * (4.5 policies, 4.6 update rules) with pserver's changes: Adagrad descends, Nesterov keeps weight
 * decay, and the gradient is clipped (clip_value per element, then scaled so its L2 norm is at most
 * clip_norm). Weights and state are doubles; integer weights are rounded half to even and
 * saturated to their type after each step, as the kernels do.
 *
 * <p>It reads the config proto directly (no {@link OptimizerConfigs}), so it checks the parsing as
 * well as the arithmetic. Every expression is written the natural way, left to right; for FLOAT64
 * and the integer types that happens to be the kernels' order of operations, so without clip_norm
 * the results agree to the bit. With clip_norm the norm is summed sequentially here and in eight
 * interleaved partial sums by the kernels, so the scale factor may differ in its last bit.
 */
final class ReferenceOptimizer {
  private final OptimizerConfig c;
  private final ElementType type;
  final double[] p;
  private final double[] m;
  private final double[] v;
  private final double[] acc;
  private final double[] accDelta;
  private long n;

  ReferenceOptimizer(ElementType type, OptimizerConfig c, double[] initial) {
    this.c = c;
    this.type = type;
    this.p = initial.clone();
    this.m = new double[p.length];
    this.v = new double[p.length];
    this.acc = new double[p.length];
    this.accDelta = new double[p.length];
  }

  double rate(long step) {
    if (c.getLrPolicy() == LrPolicy.Linear) {
      var l = c.getLinearLr();
      return Math.max(l.getLearningRate() - l.getLrDecayA() * step, l.getLrDecayB());
    }
    return c.getConstLr().getLearningRate();
  }

  void update(double[] gradient) {
    n++;
    double lr = rate(n);
    double[] x = gradient.clone();
    double cv = c.getClipValue();
    if (cv > 0) {
      for (int i = 0; i < x.length; i++) {
        x[i] = Math.max(-cv, Math.min(cv, x[i]));
      }
    }
    double cn = c.getClipNorm();
    if (cn > 0) {
      double ss = 0;
      for (double e : x) {
        ss += e * e;
      }
      double norm = Math.sqrt(ss);
      if (norm > cn) {
        double scale = cn / norm;
        for (int i = 0; i < x.length; i++) {
          x[i] = x[i] * scale;
        }
      }
    }
    for (int i = 0; i < p.length; i++) {
      p[i] = combine(p[i], step(i, x[i], lr));
    }
  }

  private double step(int i, double x, double lr) {
    switch (c.getOptimizer()) {
      case SGD -> {
        double mu = c.getSgd().getMomentum();
        double decay = c.getSgd().getDecay();
        double vel;
        if (mu == 0) {
          vel = -lr * x - lr * decay * p[i];
        } else {
          m[i] = mu * m[i] - lr * x - lr * decay * p[i];
          vel = m[i];
        }
        return c.getSgd().getNesterov() && mu != 0 ? mu * vel - lr * x - lr * decay * p[i] : vel;
      }
      case Adam -> {
        var a = c.getAdam();
        double b1 = a.getBeta1();
        double b2 = a.getBeta2();
        double lrT = lr * Math.sqrt(1 - Math.pow(b2, n)) / (1 - Math.pow(b1, n));
        m[i] = b1 * m[i] + (1 - b1) * x;
        v[i] = b2 * v[i] + (1 - b2) * x * x;
        return -lrT * (m[i] / Math.sqrt(v[i] + a.getEpsilon()) + a.getDecay() * p[i]);
      }
      case Adagrad -> {
        var a = c.getAdagrad();
        acc[i] = acc[i] + x * x;
        return -(lr * x / Math.sqrt(acc[i] + a.getEpsilon()) + lr * a.getDecay() * p[i]);
      }
      case Adadelta -> {
        var a = c.getAdadelta();
        double rho = a.getRho();
        double eps = a.getEpsilon();
        acc[i] = rho * acc[i] + (1 - rho) * x * x;
        double u = Math.sqrt(accDelta[i] + eps) / Math.sqrt(acc[i] + eps) * x;
        accDelta[i] = rho * accDelta[i] + (1 - rho) * u * u;
        return -(lr * u + lr * a.getDecay() * p[i]);
      }
      default -> throw new AssertionError(c.getOptimizer());
    }
  }

  private double combine(double p, double s) {
    if (type.isFloat()) {
      return p + s;
    }
    double r = Math.rint(p + s);
    return switch (type) {
      case INT32 -> Math.max(Integer.MIN_VALUE, Math.min(Integer.MAX_VALUE, r));
      case UINT32 -> Math.max(0, Math.min(0xffff_ffffL, r));
      case INT64 -> Math.max(-0x1p63, Math.min(0x1p63, r));
      default -> Math.max(0, Math.min(0x1p64, r));
    };
  }
}
