package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.optimizer.Fixtures.adadelta;
import static org.pserver.optimizer.Fixtures.adagrad;
import static org.pserver.optimizer.Fixtures.adam;
import static org.pserver.optimizer.Fixtures.constLr;
import static org.pserver.optimizer.Fixtures.linearLr;
import static org.pserver.optimizer.Fixtures.sgd;

import com.google.protobuf.ByteString;
import com.google.protobuf.Descriptors.Descriptor;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.pserver.proto.paddle.AdadeltaOptimizerState;
import org.pserver.proto.paddle.AdagradOptimizerState;
import org.pserver.proto.paddle.AdamConfig;
import org.pserver.proto.paddle.AdamOptimizerState;
import org.pserver.proto.paddle.LrPolicyState;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;
import org.pserver.proto.paddle.OptimizerConfig.Optimizer;
import org.pserver.proto.paddle.SGDOptimizerState;
import org.pserver.proto.paddle.TensorProto;

/** Parsing and validation of {@code paddle.OptimizerConfig} (spec 4.3, 4.4). */
class OptimizerConfigsTest {

  @Test
  void emptyConfigIsSgdWithConstantRateOne() {
    Settings s = OptimizerConfigs.settings(new byte[0]);
    assertEquals(new UpdateRule.Sgd(0, 0, false), s.rule());
    assertEquals(LearningRatePolicy.constant(1.0), s.policy());
    assertEquals(0, s.clipNorm());
    assertEquals(0, s.clipValue());
    assertEquals(0, s.rule().stateBuffers(), "no momentum buffer without momentum");
  }

  /** The seed's test fixture as hand-encoded in spec 4.4: SGD, const lr 0.1, clip_norm 0.1. */
  @Test
  void seedFixtureParses() {
    byte[] fixture = HexFormat.of().parseHex("08011a17a9010000000000000000b9010000000000000000c0"
        + "010058006209099a9999999999b93fa9069a9999999999b93f");
    Settings s = OptimizerConfigs.settings(fixture);
    assertEquals(new UpdateRule.Sgd(0, 0, false), s.rule());
    assertEquals(LearningRatePolicy.constant(0.1), s.policy());
    assertEquals(0.1, s.clipNorm());
    assertEquals(Optimizer.SGD, OptimizerConfigs.parse(fixture).getOptimizer());
  }

  /**
   * The seed's state messages (spec 4.4), declared for wire compatibility: every field number of
   * the spec's table, and a state hand-encoded from those numbers parses into the right fields.
   */
  @Test
  void seedStateMessagesHaveTheSpecFieldNumbers() throws Exception {
    Map<Descriptor, Map<String, Integer>> spec = Map.of(
        LrPolicyState.getDescriptor(), Map.of("learning_rate", 1, "lr_decay_a", 2, "lr_decay_b", 3),
        SGDOptimizerState.getDescriptor(), Map.of("lr_state", 101, "num_sample_passed", 104,
            "parameter", 1, "momentums", 2),
        AdadeltaOptimizerState.getDescriptor(), Map.of("lr_state", 101, "num_sample_passed", 104,
            "parameter", 1, "accum_gradient", 2, "accum_delta", 3, "update_delta", 4),
        AdagradOptimizerState.getDescriptor(), Map.of("lr_state", 101, "num_sample_passed", 104,
            "parameter", 1, "accum_gradient", 2),
        AdamOptimizerState.getDescriptor(), Map.of("lr_state", 101, "num_sample_passed", 104,
            "parameter", 1, "momentums", 2, "velocitys", 3));
    spec.forEach((message, fields) -> {
      assertEquals(fields.size(), message.getFields().size(), message.getName());
      fields.forEach((name, number) -> assertEquals(number,
          message.findFieldByName(name).getNumber(), message.getName() + "." + name));
    });
    assertEquals(1.0, LrPolicyState.getDefaultInstance().getLearningRate());

    // Hand-encoded (tag = number << 3 | wire type): parameter (1) {data_type 4, content "1.5",
    // "2"}, momentums (2) {content "0.1"}, velocitys (3) {content "1e-07"}, lr_state (101, tag
    // aa 06) {learning_rate 0.5, lr_decay_a 0.25}, num_sample_passed (104, tag c1 06) 3.0.
    AdamOptimizerState s = AdamOptimizerState.parseFrom(HexFormat.of().parseHex(
        "0a0a08041203312e3512013212051203302e311a07120531652d3037"
            + "aa061209000000000000e03f11000000000000d03fc1060000000000000840"));
    assertEquals(TensorProto.DataType.PADDLE_ELEMENT_TYPE_FLOAT32, s.getParameter().getDataType());
    assertEquals(List.of("1.5", "2"),
        s.getParameter().getContentList().stream().map(ByteString::toStringUtf8).toList());
    assertEquals("0.1", s.getMomentums().getContent(0).toStringUtf8());
    assertEquals("1e-07", s.getVelocitys().getContent(0).toStringUtf8());
    assertEquals(0.5, s.getLrState().getLearningRate());
    assertEquals(0.25, s.getLrState().getLrDecayA());
    assertEquals(3.0, s.getNumSamplePassed());
    assertTrue(s.getUnknownFields().asMap().isEmpty());
  }

  @Test
  void defaultsOfMissingSections() {
    // Adadelta and Adagrad sections have proto defaults (rho 0.9, epsilon 1e-5); Linear lr 1.0.
    OptimizerConfig c = OptimizerConfig.newBuilder().setOptimizer(Optimizer.Adadelta)
        .setLrPolicy(LrPolicy.Linear).build();
    Settings s = OptimizerConfigs.settings(c.toByteArray());
    assertEquals(new UpdateRule.Adadelta(0.9, 1e-5, 0), s.rule());
    assertEquals(LearningRatePolicy.linear(1.0, 0, 0), s.policy());
    c = OptimizerConfig.newBuilder().setOptimizer(Optimizer.Adagrad).build();
    assertEquals(new UpdateRule.Adagrad(1e-5, 0), OptimizerConfigs.settings(c.toByteArray()).rule());
  }

  @Test
  void everyAlgorithmAndPolicyMapsToItsRule() {
    assertEquals(new UpdateRule.Sgd(0.9, 0.01, true),
        OptimizerConfigs.settings(sgd(constLr(0.1), 0.9, 0.01, true).build().toByteArray()).rule());
    assertEquals(new UpdateRule.Adam(0.9, 0.999, 1e-8, 0.5),
        OptimizerConfigs.settings(adam(constLr(0.1), 0.9, 0.999, 1e-8, 0.5).build().toByteArray())
            .rule());
    assertEquals(new UpdateRule.Adagrad(1e-6, 0.25),
        OptimizerConfigs.settings(adagrad(constLr(0.1), 1e-6, 0.25).build().toByteArray()).rule());
    assertEquals(new UpdateRule.Adadelta(0.5, 1e-3, 0.125),
        OptimizerConfigs.settings(adadelta(constLr(0.1), 0.5, 1e-3, 0.125).build().toByteArray())
            .rule());
    Settings s = OptimizerConfigs.settings(
        sgd(linearLr(2, 0.5, 0.25), 0, 0, false).setClipNorm(3).setClipValue(4).build()
            .toByteArray());
    assertEquals(LearningRatePolicy.linear(2, 0.5, 0.25), s.policy());
    assertEquals(3, s.clipNorm());
    assertEquals(4, s.clipValue());
  }

  @Test
  void constPolicyIgnoresTheLinearSection() {
    Settings s = OptimizerConfigs.settings(constLr(0.3).setLinearLr(
        org.pserver.proto.paddle.LinearLrConfig.newBuilder().setLrDecayA(-5)).build().toByteArray());
    assertEquals(LearningRatePolicy.constant(0.3), s.policy());
  }

  @Test
  void linearPolicyMatchesSpecValues() {
    // Spec 4.5: LinearLr(lr 1.0, a 0.1, b 0.05): n=1 -> 0.9, n=5 -> 0.5, n >= 10 -> 0.05.
    LearningRatePolicy p = LearningRatePolicy.linear(1.0, 0.1, 0.05);
    assertEquals(0.9, p.rate(1), 1e-15);
    assertEquals(0.5, p.rate(5), 1e-15);
    assertEquals(0.05, p.rate(10));
    assertEquals(0.05, p.rate(1_000_000));
    assertEquals(0.25, LearningRatePolicy.constant(0.25).rate(123));
  }

  @Test
  void sectionsOfOtherAlgorithmsAreNotValidated() {
    // Like the seed, only the selected optimizer's section is read.
    byte[] c = sgd(constLr(0.1), 0, 0, false)
        .setAdam(AdamConfig.newBuilder().setBeta1(7).setEpsilon(-1)).build().toByteArray();
    assertEquals(Optimizer.SGD, OptimizerConfigs.parse(c).getOptimizer());
  }

  @Test
  void boundaryValuesAreAccepted() {
    OptimizerConfigs.parse(sgd(constLr(0), 0, 0, true).build().toByteArray());
    OptimizerConfigs.parse(adam(constLr(0.1), 0, 0, Double.MIN_VALUE, 0).build().toByteArray());
    OptimizerConfigs.parse(adadelta(linearLr(0, 0, 0), 0, 1e-300, 0).build().toByteArray());
  }

  @Test
  void unparseableBytesAreRejected() {
    for (byte[] bad : List.of(new byte[] {(byte) 0xff}, new byte[] {0x0a, 0x05, 0x01},
        "not a protobuf".getBytes(java.nio.charset.StandardCharsets.US_ASCII))) {
      OptimizerException e = assertThrows(OptimizerException.class,
          () -> OptimizerConfigs.parse(bad));
      assertTrue(e.getMessage().contains("not a paddle.OptimizerConfig"), e.getMessage());
    }
  }

  /** proto2 files unknown enum values among the unknown fields; the seed would run them as SGD. */
  @Test
  void unknownEnumValuesAreRejected() {
    expectRejected(new byte[] {0x08, 0x09}, "unknown optimizer 9 (field 1)");
    expectRejected(new byte[] {0x08, 0x00}, "unknown optimizer 0 (field 1)");
    // field 11, varint 7: tag (11 << 3) | 0 = 0x58
    expectRejected(new byte[] {0x58, 0x07}, "unknown lr_policy 7 (field 11)");
    // a known value followed by an unknown one: still rejected
    expectRejected(new byte[] {0x08, 0x04, 0x08, 0x05}, "unknown optimizer 5");
    // field 1 sent as a length-delimited value (wire type 2)
    expectRejected(new byte[] {0x0a, 0x00}, "unknown optimizer a value that is not a varint");
  }

  @Test
  void unknownUnrelatedFieldsAreIgnored() {
    // field 200, varint 1: forward compatible, like the seed
    byte[] c = {(byte) 0xc0, 0x0c, 0x01};
    assertEquals(Optimizer.SGD, OptimizerConfigs.parse(c).getOptimizer());
  }

  @Test
  void adamWithoutEpsilonIsRejectedWithTheReason() {
    // The seed's AdamConfig declares no defaults: beta_1 = beta_2 = epsilon = 0 when unset.
    byte[] c = OptimizerConfig.newBuilder().setOptimizer(Optimizer.Adam).build().toByteArray();
    String m = expectRejected(c, "adam.epsilon must be a finite number > 0, got 0.0");
    assertTrue(m.contains("NaN"), m);
    assertTrue(m.contains("no defaults"), m);
  }

  @TestFactory
  Stream<DynamicTest> badHyperParametersAreRejectedNamingTheField() {
    record Bad(String field, OptimizerConfig.Builder config) {}
    double nan = Double.NaN;
    double inf = Double.POSITIVE_INFINITY;
    List<Bad> bad = List.of(
        new Bad("const_lr.learning_rate", constLr(-0.1)),
        new Bad("const_lr.learning_rate", constLr(nan)),
        new Bad("const_lr.learning_rate", constLr(inf)),
        new Bad("linear_lr.learning_rate", linearLr(-1, 0, 0)),
        new Bad("linear_lr.lr_decay_a", linearLr(1, -0.1, 0)),
        new Bad("linear_lr.lr_decay_a", linearLr(1, nan, 0)),
        new Bad("linear_lr.lr_decay_b", linearLr(1, 0.1, -0.05)),
        new Bad("sgd.momentum", sgd(constLr(0.1), -0.9, 0, false)),
        new Bad("sgd.momentum", sgd(constLr(0.1), nan, 0, false)),
        new Bad("sgd.momentum", sgd(constLr(0.1), 1, 0, false)),
        new Bad("sgd.momentum", sgd(constLr(0.1), 1.5, 0, true)),
        new Bad("sgd.decay", sgd(constLr(0.1), 0, -0.01, false)),
        new Bad("sgd.decay", sgd(constLr(0.1), 0, inf, false)),
        new Bad("adam.beta_1", adam(constLr(0.1), 1, 0.999, 1e-8, 0)),
        new Bad("adam.beta_1", adam(constLr(0.1), -0.1, 0.999, 1e-8, 0)),
        new Bad("adam.beta_2", adam(constLr(0.1), 0.9, 1.5, 1e-8, 0)),
        new Bad("adam.beta_2", adam(constLr(0.1), 0.9, nan, 1e-8, 0)),
        new Bad("adam.epsilon", adam(constLr(0.1), 0.9, 0.999, 0, 0)),
        new Bad("adam.epsilon", adam(constLr(0.1), 0.9, 0.999, -1e-8, 0)),
        new Bad("adam.decay", adam(constLr(0.1), 0.9, 0.999, 1e-8, -1)),
        new Bad("adagrad.epsilon", adagrad(constLr(0.1), 0, 0)),
        new Bad("adagrad.epsilon", adagrad(constLr(0.1), nan, 0)),
        new Bad("adagrad.decay", adagrad(constLr(0.1), 1e-6, -0.5)),
        new Bad("adadelta.rho", adadelta(constLr(1), 1, 1e-6, 0)),
        new Bad("adadelta.rho", adadelta(constLr(1), -0.5, 1e-6, 0)),
        new Bad("adadelta.epsilon", adadelta(constLr(1), 0.9, 0, 0)),
        new Bad("adadelta.epsilon", adadelta(constLr(1), 0.9, inf, 0)),
        new Bad("adadelta.decay", adadelta(constLr(1), 0.9, 1e-6, nan)),
        new Bad("clip_norm", constLr(0.1).setClipNorm(-1)),
        new Bad("clip_norm", constLr(0.1).setClipNorm(nan)),
        new Bad("clip_value", constLr(0.1).setClipValue(-0.5)),
        new Bad("clip_value", constLr(0.1).setClipValue(inf)));
    return bad.stream().map(b -> DynamicTest.dynamicTest(b.field() + " " + b.config().build().toString().replace('\n', ' '),
        () -> {
          String m = expectRejected(b.config().build().toByteArray(), b.field() + " must be");
          assertFalse(m.isBlank());
        }));
  }

  /** Asserts that {@code config} is rejected with a message containing {@code part}. */
  static String expectRejected(byte[] config, String part) {
    OptimizerException e = assertThrows(OptimizerException.class,
        () -> OptimizerConfigs.parse(config));
    assertInstanceOf(IllegalArgumentException.class, e);
    assertTrue(e.getMessage().contains(part), "expected '" + part + "' in: " + e.getMessage());
    assertTrue(e.getMessage().startsWith("invalid optimizer config: "), e.getMessage());
    return e.getMessage();
  }
}
