package org.pserver.optimizer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.AdadeltaConfig;
import org.pserver.proto.paddle.AdagradConfig;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.ConstLrConfig;
import org.pserver.proto.paddle.LinearLrConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;
import org.pserver.proto.paddle.OptimizerConfig.Optimizer;
import org.pserver.proto.paddle.SGDConfig;

/** Configs, buffers and state bytes shared by the optimizer tests. */
final class Fixtures {
  private Fixtures() {}

  /** The Java kernels always, and the native ones when they loaded. */
  static List<UpdateKernels> kernels() {
    List<UpdateKernels> l = new ArrayList<>();
    l.add(Kernels.java());
    Kernels.nativeKernels().ifPresent(l::add);
    return l;
  }

  // --- configs -----------------------------------------------------------------------------------

  static OptimizerConfig.Builder constLr(double lr) {
    return OptimizerConfig.newBuilder()
        .setLrPolicy(LrPolicy.Const)
        .setConstLr(ConstLrConfig.newBuilder().setLearningRate(lr));
  }

  static OptimizerConfig.Builder linearLr(double lr, double a, double b) {
    return OptimizerConfig.newBuilder()
        .setLrPolicy(LrPolicy.Linear)
        .setLinearLr(LinearLrConfig.newBuilder().setLearningRate(lr).setLrDecayA(a).setLrDecayB(b));
  }

  static OptimizerConfig.Builder sgd(
      OptimizerConfig.Builder b, double momentum, double decay, boolean nesterov) {
    return b.setOptimizer(Optimizer.SGD)
        .setSgd(SGDConfig.newBuilder().setMomentum(momentum).setDecay(decay).setNesterov(nesterov));
  }

  static OptimizerConfig.Builder adam(
      OptimizerConfig.Builder b, double beta1, double beta2, double epsilon, double decay) {
    return b.setOptimizer(Optimizer.Adam)
        .setAdam(AdamConfig.newBuilder().setBeta1(beta1).setBeta2(beta2).setEpsilon(epsilon)
            .setDecay(decay));
  }

  static OptimizerConfig.Builder adagrad(OptimizerConfig.Builder b, double epsilon, double decay) {
    return b.setOptimizer(Optimizer.Adagrad)
        .setAdagrad(AdagradConfig.newBuilder().setEpsilon(epsilon).setDecay(decay));
  }

  static OptimizerConfig.Builder adadelta(
      OptimizerConfig.Builder b, double rho, double epsilon, double decay) {
    return b.setOptimizer(Optimizer.Adadelta)
        .setAdadelta(AdadeltaConfig.newBuilder().setRho(rho).setEpsilon(epsilon).setDecay(decay));
  }

  /** One config of every algorithm and variant (const lr), named for test reports. */
  static List<Named> algorithms() {
    return List.of(
        new Named("sgd", sgd(constLr(0.1), 0, 0, false).build()),
        new Named("sgd decay nesterov(momentum 0)", sgd(constLr(0.1), 0, 0.01, true).build()),
        new Named("momentum decay", sgd(constLr(0.05), 0.9, 0.01, false).build()),
        new Named("nesterov decay", sgd(constLr(0.05), 0.9, 0.01, true).build()),
        new Named("adam decay", adam(constLr(0.01), 0.9, 0.999, 1e-8, 0.001).build()),
        new Named("adagrad decay", adagrad(constLr(0.1), 1e-6, 0.01).build()),
        new Named("adadelta decay", adadelta(constLr(1.0), 0.95, 1e-6, 0.01).build()));
  }

  record Named(String name, OptimizerConfig config) {
    @Override
    public String toString() {
      return name;
    }
  }

  // --- buffers -----------------------------------------------------------------------------------

  /** {@code values} as little-endian elements of {@code t} in a heap buffer (integers truncated). */
  static ByteBuffer le(ElementType t, double... values) {
    ByteBuffer b = ByteBuffer.allocate(values.length * t.size()).order(ByteOrder.LITTLE_ENDIAN);
    for (double v : values) {
      switch (t) {
        case FLOAT32 -> b.putFloat((float) v);
        case FLOAT64 -> b.putDouble(v);
        case INT32 -> b.putInt((int) v);
        case UINT32 -> b.putInt((int) (long) v);
        case INT64, UINT64 -> b.putLong((long) v);
      }
    }
    return b.flip();
  }

  /** The same as {@link #le} in a direct buffer. */
  static ByteBuffer leDirect(ElementType t, double... values) {
    ByteBuffer h = le(t, values);
    return ByteBuffer.allocateDirect(h.remaining()).order(ByteOrder.LITTLE_ENDIAN).put(h).flip();
  }

  /** Little-endian elements of {@code t} from position to limit, as doubles (unsigned as such). */
  static double[] values(ElementType t, ByteBuffer le) {
    ByteBuffer b = le.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    double[] v = new double[b.remaining() / t.size()];
    for (int i = 0; i < v.length; i++) {
      int at = b.position() + i * t.size();
      v[i] = switch (t) {
        case FLOAT32 -> b.getFloat(at);
        case FLOAT64 -> b.getDouble(at);
        case INT32 -> b.getInt(at);
        case UINT32 -> Integer.toUnsignedLong(b.getInt(at));
        case INT64 -> b.getLong(at);
        case UINT64 -> {
          long x = b.getLong(at);
          yield x >= 0 ? x : (double) (x >>> 1) * 2.0;
        }
      };
    }
    return v;
  }
}
