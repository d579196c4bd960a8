package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.optimizer.Fixtures.constLr;
import static org.pserver.optimizer.Fixtures.le;
import static org.pserver.optimizer.Fixtures.linearLr;
import static org.pserver.optimizer.Fixtures.sgd;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.OptimizerConfig;

/** Saving and restoring: exact, resumable, and laid out as documented on ParameterOptimizer. */
class StateRoundTripTest {
  static final int SAVE_AT = 5;
  static final int STEPS = 12;
  static final int N = 19;
  static final ElementType[] TYPES = {
    ElementType.FLOAT32, ElementType.FLOAT64, ElementType.INT32, ElementType.UINT64
  };

  static Iterable<UpdateKernels> kernels() {
    return Fixtures.kernels();
  }

  /** Every algorithm, plus the Linear policy and both clips on two of them. */
  static List<Fixtures.Named> configs() {
    List<Fixtures.Named> l = new ArrayList<>(Fixtures.algorithms());
    l.add(new Fixtures.Named("adam linear clipped",
        Fixtures.adam(linearLr(0.05, 0.001, 0.01), 0.9, 0.99, 1e-6, 0.01).setClipNorm(3)
            .setClipValue(1.5).build()));
    l.add(new Fixtures.Named("nesterov linear clipped",
        sgd(linearLr(0.5, 0.01, 0.1), 0.8, 0.01, true).setClipNorm(2).build()));
    return l;
  }

  static double[] initial(ElementType t) {
    double[] p = new double[N];
    for (int i = 0; i < N; i++) {
      p[i] = t.isFloat() ? Math.sin(i) : 1000 + 37 * i;
    }
    return p;
  }

  static double[] gradient(ElementType t, int step) {
    double[] g = new double[N];
    for (int i = 0; i < N; i++) {
      double x = Math.cos(step * 1.7 + i);
      g[i] = t.isFloat() ? x : Math.round(20 * x);
    }
    return g;
  }

  private static ParameterOptimizer run(ParameterOptimizer o, int from, int to) {
    for (int s = from + 1; s <= to; s++) {
      o.update(o.type(), le(o.type(), gradient(o.type(), s)));
    }
    return o;
  }

  /**
   * Save at step 5, restore into a fresh optimizer (with the same or the other kernels), continue
   * to step 12: the state must equal an uninterrupted run's, byte for byte.
   */
  @TestFactory
  Stream<DynamicTest> resumedRunIsBitIdenticalToAnUninterruptedOne() {
    List<DynamicTest> tests = new ArrayList<>();
    for (UpdateKernels saveWith : Fixtures.kernels()) {
      for (UpdateKernels restoreWith : Fixtures.kernels()) {
        for (Fixtures.Named c : configs()) {
          for (ElementType t : TYPES) {
            String name = c + " " + t + " saved by " + saveWith.name() + ", restored into "
                + restoreWith.name();
            tests.add(DynamicTest.dynamicTest(name, () -> {
              byte[] config = c.config().toByteArray();
              ParameterOptimizer straight = run(
                  ParameterOptimizer.create(t, le(t, initial(t)), config, saveWith), 0, STEPS);
              ParameterOptimizer first = run(
                  ParameterOptimizer.create(t, le(t, initial(t)), config, saveWith), 0, SAVE_AT);
              byte[] saved = Io.state(first);
              ParameterOptimizer resumed = Io.restore(t, config, saved, restoreWith);
              assertEquals(SAVE_AT, resumed.step());
              assertArrayEquals(saved, Io.state(resumed), "restore then save changed the bytes");
              run(resumed, SAVE_AT, STEPS);
              assertEquals(STEPS, resumed.step());
              assertArrayEquals(Io.state(straight), Io.state(resumed));
              assertFalse(Arrays.equals(saved, Io.state(resumed)), "the run did not move");
            }));
          }
        }
      }
    }
    return tests.stream();
  }

  @ParameterizedTest
  @MethodSource("kernels")
  void freshOptimizerRoundTrips(UpdateKernels k) throws IOException {
    for (ElementType t : ElementType.values()) {
      byte[] config = Fixtures.adadelta(constLr(1), 0.9, 1e-6, 0).build().toByteArray();
      ParameterOptimizer o = ParameterOptimizer.create(t, le(t, 1, 2, 3), config, k);
      ParameterOptimizer r = Io.restore(t, config, Io.state(o), k);
      assertEquals(0, r.step());
      assertEquals(o.weights(), r.weights());
      assertArrayEquals(Io.state(o), Io.state(r));
    }
  }

  /** readState consumes exactly stateSize() bytes, so states can follow each other in a stream. */
  @Test
  void statesFollowEachOtherInOneStream() throws IOException {
    UpdateKernels k = Kernels.get();
    byte[] sgd = sgd(constLr(0.1), 0.9, 0, false).build().toByteArray();
    byte[] adam = Fixtures.adam(constLr(0.1), 0.9, 0.99, 1e-8, 0).build().toByteArray();
    ParameterOptimizer a = run(ParameterOptimizer.create(ElementType.FLOAT32,
        le(ElementType.FLOAT32, initial(ElementType.FLOAT32)), sgd, k), 0, 3);
    ParameterOptimizer b = run(ParameterOptimizer.create(ElementType.INT64,
        le(ElementType.INT64, initial(ElementType.INT64)), adam, k), 0, 4);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    WritableByteChannel ch = Channels.newChannel(out);
    a.writeState(ch);
    b.writeState(ch);
    out.write(new byte[] {1, 2, 3});
    assertEquals(a.stateSize() + b.stateSize() + 3, out.size());

    ByteArrayInputStream bytes = new ByteArrayInputStream(out.toByteArray());
    ReadableByteChannel in = Channels.newChannel(bytes);
    ParameterOptimizer a2 = ParameterOptimizer.readState(ElementType.FLOAT32, sgd, in, k);
    assertEquals(b.stateSize() + 3, bytes.available());
    ParameterOptimizer b2 = ParameterOptimizer.readState(ElementType.INT64, adam, in, k);
    assertEquals(3, bytes.available());
    assertArrayEquals(Io.state(a), Io.state(a2));
    assertArrayEquals(Io.state(b), Io.state(b2));
    assertEquals(4, b2.step());
  }

  /** The bytes follow the table in ParameterOptimizer's class comment. */
  @Test
  void layoutMatchesTheDocumentedTable() {
    ElementType t = ElementType.FLOAT64;
    OptimizerConfig c = Fixtures.adam(linearLr(0.5, 0.01, 0.125), 0.9, 0.99, 1e-8, 0).build();
    byte[] config = c.toByteArray();
    ParameterOptimizer o = ParameterOptimizer.create(t, le(t, initial(t)), config, Kernels.get());
    run(o, 0, 3);
    byte[] s = Io.state(o);
    ByteBuffer b = ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN);
    assertEquals(64 + N * 8 + 2 * N * 8 + 4, s.length);
    assertArrayEquals("PSOS".getBytes(java.nio.charset.StandardCharsets.US_ASCII),
        Arrays.copyOf(s, 4));
    assertEquals(1, b.getShort(4), "version");
    assertEquals(4, b.get(6), "optimizer: Adam = 4");
    assertEquals(5, b.get(7), "element type: FLOAT64 = 5");
    assertEquals(s.length, b.getLong(8), "total length");
    assertEquals(N, b.getInt(16), "elements");
    assertEquals(2, b.get(20), "state buffers");
    assertEquals(1, b.get(21), "policy: Linear = 1");
    assertEquals(0, b.getShort(22), "reserved");
    assertEquals(3, b.getLong(24), "step");
    assertEquals(0.5, b.getDouble(32));
    assertEquals(0.01, b.getDouble(40));
    assertEquals(0.125, b.getDouble(48));
    assertEquals(config.length, b.getInt(56));
    CRC32C crc = new CRC32C();
    crc.update(config);
    assertEquals((int) crc.getValue(), b.getInt(60), "config CRC-32C");
    double[] w = Io.weights(o);
    for (int i = 0; i < N; i++) {
      assertEquals(w[i], b.getDouble(64 + 8 * i), "weight " + i);
      // m then v: m is non-zero after three steps of non-zero gradients, v positive
      assertFalse(b.getDouble(64 + 8 * N + 8 * i) == 0, "m " + i);
      assertTrue(b.getDouble(64 + 16 * N + 8 * i) > 0, "v " + i);
    }
    crc.reset();
    crc.update(s, 0, s.length - 4);
    assertEquals((int) crc.getValue(), b.getInt(s.length - 4), "CRC-32C of everything before");
  }
}
