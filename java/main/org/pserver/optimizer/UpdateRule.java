package org.pserver.optimizer;

import java.nio.ByteBuffer;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.OptimizerConfig.Optimizer;

/**
 * One optimizer algorithm with validated hyper-parameters: how many state buffers it keeps, in
 * which order they are saved, and the kernel call that applies one gradient. The math is the
 * kernels' ({@code native/include/pskernels.h}); a rule only supplies the per-step arguments.
 * Constructed only by {@link OptimizerConfigs}, after validation.
 */
sealed interface UpdateRule {

  /** The config's optimizer enum value; its number is the kind byte of the saved state. */
  Optimizer kind();

  /** The number of state buffers, each one element of {@link ElementType#stateSize()} per weight. */
  int stateBuffers();

  /**
   * Applies one gradient in place. {@code state} holds {@link #stateBuffers()} buffers in the
   * order of the saved state; {@code step} is the update number, from 1; {@code lr} the policy's
   * rate for it.
   */
  void apply(
      UpdateKernels k,
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer[] state,
      int elements,
      long step,
      double lr,
      double gradScale,
      double gradClip);

  /** SGD; one momentum buffer only when {@code momentum != 0}. */
  record Sgd(double momentum, double decay, boolean nesterov) implements UpdateRule {
    @Override
    public Optimizer kind() {
      return Optimizer.SGD;
    }

    @Override
    public int stateBuffers() {
      return momentum == 0 ? 0 : 1;
    }

    @Override
    public void apply(UpdateKernels k, ElementType type, ByteBuffer param, ByteBuffer grad,
        ByteBuffer[] state, int elements, long step, double lr, double gradScale, double gradClip) {
      ByteBuffer mom = momentum == 0 ? null : state[0];
      k.sgd(type, param, grad, mom, 0, elements, lr, momentum, decay, nesterov, gradScale, gradClip);
    }
  }

  /** Adam; buffers m (first moment) and v (second moment). */
  record Adam(double beta1, double beta2, double epsilon, double decay) implements UpdateRule {
    @Override
    public Optimizer kind() {
      return Optimizer.Adam;
    }

    @Override
    public int stateBuffers() {
      return 2;
    }

    /**
     * The bias-corrected rate of step {@code t}: {@code lr * sqrt(1 - beta2^t) / (1 - beta1^t)},
     * in double. {@code beta1 < 1}, so the divisor is never 0.
     */
    double biasCorrected(double lr, long t) {
      return lr * Math.sqrt(1 - Math.pow(beta2, t)) / (1 - Math.pow(beta1, t));
    }

    @Override
    public void apply(UpdateKernels k, ElementType type, ByteBuffer param, ByteBuffer grad,
        ByteBuffer[] state, int elements, long step, double lr, double gradScale, double gradClip) {
      k.adam(type, param, grad, state[0], state[1], 0, elements, biasCorrected(lr, step),
          beta1, beta2, epsilon, decay, gradScale, gradClip);
    }
  }

  /** Adagrad (descending); buffer accum_gradient. */
  record Adagrad(double epsilon, double decay) implements UpdateRule {
    @Override
    public Optimizer kind() {
      return Optimizer.Adagrad;
    }

    @Override
    public int stateBuffers() {
      return 1;
    }

    @Override
    public void apply(UpdateKernels k, ElementType type, ByteBuffer param, ByteBuffer grad,
        ByteBuffer[] state, int elements, long step, double lr, double gradScale, double gradClip) {
      k.adagrad(type, param, grad, state[0], 0, elements, lr, epsilon, decay, gradScale, gradClip);
    }
  }

  /** Adadelta in the seed's lr-scaled form; buffers accum_gradient, accum_delta, update_delta. */
  record Adadelta(double rho, double epsilon, double decay) implements UpdateRule {
    @Override
    public Optimizer kind() {
      return Optimizer.Adadelta;
    }

    @Override
    public int stateBuffers() {
      return 3;
    }

    @Override
    public void apply(UpdateKernels k, ElementType type, ByteBuffer param, ByteBuffer grad,
        ByteBuffer[] state, int elements, long step, double lr, double gradScale, double gradClip) {
      k.adadelta(type, param, grad, state[0], state[1], state[2], 0, elements, lr, rho, epsilon,
          decay, gradScale, gradClip);
    }
  }
}
