package org.pserver.optimizer;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnknownFieldSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import org.pserver.proto.paddle.AdadeltaConfig;
import org.pserver.proto.paddle.AdagradConfig;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.LinearLrConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.SGDConfig;

/**
 * Parses and validates a serialized {@code paddle.OptimizerConfig} (the seed's wire format).
 *
 * <h2>What is accepted</h2>
 *
 * An empty config is valid: proto2 defaults make it SGD with a constant learning rate of 1.0, no
 * momentum, no decay, no clipping. Only the sections the config selects are read and checked
 * (e.g. {@code adam} is ignored when {@code optimizer} is SGD), like the seed. Unknown fields other
 * than the two enums below are ignored, for forward compatibility.
 *
 * <h2>What is rejected, with an {@link OptimizerException} naming the field and the value</h2>
 *
 * <ul>
 *   <li>Bytes that are not a valid protobuf message.
 *   <li>An {@code optimizer} (field 1) or {@code lr_policy} (field 11) value outside its enum.
 *       Trap: proto2 does not fail on these; it keeps them among the unknown fields and reports
 *       the field as unset, i.e. as SGD or Const. The seed would thus silently run a config it
 *       does not understand; pserver refuses it.
 *   <li>NaN, infinite or negative learning rates ({@code const_lr.learning_rate}, {@code
 *       linear_lr.learning_rate}, {@code lr_decay_a}, {@code lr_decay_b}), any decay, and {@code
 *       clip_norm} / {@code clip_value}.
 *   <li>{@code sgd.momentum}, {@code adadelta.rho}, {@code adam.beta_1} and {@code adam.beta_2}
 *       outside {@code [0, 1)}: each is the decay factor of a running average, and at 1 or above
 *       the average never forgets (momentum 1 sums every gradient ever seen) or grows without
 *       bound. The seed accepted any value, as PyTorch's SGD still does for momentum; pserver
 *       refuses them all alike rather than run a config that diverges.
 *   <li>An {@code epsilon} that is not {@code > 0}: every optimizer that has one divides by
 *       {@code sqrt(accumulator + epsilon)}, and the accumulators of a zero gradient are 0, so
 *       {@code epsilon = 0} turns a zero gradient into {@code 0/0 = NaN} in the weights. Trap:
 *       the seed's {@code AdamConfig} declares no defaults, so an Adam config that leaves {@code
 *       epsilon} unset has {@code epsilon = 0} and is rejected here (the seed accepted it).
 * </ul>
 */
public final class OptimizerConfigs {
  private static final int OPTIMIZER_FIELD = OptimizerConfig.OPTIMIZER_FIELD_NUMBER;
  private static final int LR_POLICY_FIELD = OptimizerConfig.LR_POLICY_FIELD_NUMBER;

  private OptimizerConfigs() {}

  /**
   * Parses {@code config} and checks it as described above.
   *
   * @return the parsed message
   * @throws OptimizerException if the bytes do not parse or the config is invalid
   */
  public static OptimizerConfig parse(byte[] config) {
    return settings(config).proto();
  }

  /** Parses and validates {@code config} into the typed settings an optimizer runs with. */
  static Settings settings(byte[] config) {
    Objects.requireNonNull(config, "config");
    OptimizerConfig c;
    try {
      c = OptimizerConfig.parseFrom(config);
    } catch (InvalidProtocolBufferException e) {
      throw new OptimizerException(
          "invalid optimizer config: " + config.length + " bytes that are not a paddle.OptimizerConfig ("
              + e.getMessage() + ")",
          e);
    }
    rejectUnknownEnum(c, OPTIMIZER_FIELD, "optimizer", "SGD=1, Adadelta=2, Adagrad=3 or Adam=4");
    rejectUnknownEnum(c, LR_POLICY_FIELD, "lr_policy", "Const=0 or Linear=1");
    return new Settings(
        c,
        rule(c),
        policy(c),
        nonNegative("clip_norm", c.getClipNorm()),
        nonNegative("clip_value", c.getClipValue()));
  }

  private static UpdateRule rule(OptimizerConfig c) {
    switch (c.getOptimizer()) {
      case SGD -> {
        SGDConfig s = c.getSgd();
        return new UpdateRule.Sgd(
            unitInterval("sgd.momentum", s.getMomentum()),
            nonNegative("sgd.decay", s.getDecay()),
            s.getNesterov());
      }
      case Adam -> {
        AdamConfig a = c.getAdam();
        return new UpdateRule.Adam(
            unitInterval("adam.beta_1", a.getBeta1()),
            unitInterval("adam.beta_2", a.getBeta2()),
            epsilon(
                "adam.epsilon",
                a.getEpsilon(),
                "; the seed's AdamConfig has no defaults, so an unset epsilon is 0: set it"
                    + " explicitly (1e-8 is usual)"),
            nonNegative("adam.decay", a.getDecay()));
      }
      case Adagrad -> {
        AdagradConfig a = c.getAdagrad();
        return new UpdateRule.Adagrad(
            epsilon("adagrad.epsilon", a.getEpsilon(), ""),
            nonNegative("adagrad.decay", a.getDecay()));
      }
      case Adadelta -> {
        AdadeltaConfig a = c.getAdadelta();
        return new UpdateRule.Adadelta(
            unitInterval("adadelta.rho", a.getRho()),
            epsilon("adadelta.epsilon", a.getEpsilon(), ""),
            nonNegative("adadelta.decay", a.getDecay()));
      }
      default -> throw new AssertionError(c.getOptimizer()); // unknown values are rejected above
    }
  }

  private static LearningRatePolicy policy(OptimizerConfig c) {
    switch (c.getLrPolicy()) {
      case Const -> {
        return LearningRatePolicy.constant(
            nonNegative("const_lr.learning_rate", c.getConstLr().getLearningRate()));
      }
      case Linear -> {
        LinearLrConfig l = c.getLinearLr();
        return LearningRatePolicy.linear(
            nonNegative("linear_lr.learning_rate", l.getLearningRate()),
            nonNegative("linear_lr.lr_decay_a", l.getLrDecayA()),
            nonNegative("linear_lr.lr_decay_b", l.getLrDecayB()));
      }
      default -> throw new AssertionError(c.getLrPolicy());
    }
  }

  /**
   * proto2 keeps an enum value it does not know among the unknown fields (under the enum's own
   * field number) instead of failing; the same happens to a value sent with the wrong wire type.
   */
  private static void rejectUnknownEnum(
      OptimizerConfig c, int field, String name, String expected) {
    UnknownFieldSet unknown = c.getUnknownFields();
    if (!unknown.hasField(field)) {
      return;
    }
    UnknownFieldSet.Field f = unknown.getField(field);
    List<String> values = new ArrayList<>();
    f.getVarintList().forEach(v -> values.add(Long.toString(v)));
    String got =
        values.isEmpty() ? "a value that is not a varint" : String.join(", ", values);
    throw new OptimizerException(
        "invalid optimizer config: unknown " + name + " " + got + " (field " + field
            + "); expected " + expected);
  }

  private static double nonNegative(String field, double v) {
    if (!(v >= 0) || Double.isInfinite(v)) {
      throw new OptimizerException(
          "invalid optimizer config: " + field + " must be a finite number >= 0, got " + v);
    }
    return v;
  }

  private static double unitInterval(String field, double v) {
    if (!(v >= 0 && v < 1)) {
      throw new OptimizerException(
          "invalid optimizer config: " + field + " must be in [0, 1), got " + v);
    }
    return v;
  }

  private static double epsilon(String field, double v, String hint) {
    if (!(v > 0) || Double.isInfinite(v)) {
      throw new OptimizerException(
          "invalid optimizer config: " + field + " must be a finite number > 0, got " + v
              + " (the update divides by sqrt(accumulator + epsilon), and a zero gradient leaves"
              + " the accumulator at 0, so epsilon 0 would write 0/0 = NaN into the weights"
              + hint + ")");
    }
    return v;
  }
}
