package org.pserver.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.testing.LocalPserver;

/**
 * Large parameters as blocks spread over every pserver: odd sizes, a parameter smaller than one
 * block, one with more blocks than there are pservers, a trainer that never saw the layout, and
 * one pserver's blocks recovered from its checkpoint. Uses a tiny block size (64 bytes).
 */
class BlocksTest {
  private static final int BLOCK = 64;

  @TempDir Path dir;
  final List<LocalPserver> pservers = new ArrayList<>();
  List<String> addrs;

  @BeforeEach
  void start() throws Exception {
    addrs = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      LocalPserver p = new LocalPserver(i, dir, null);
      pservers.add(p);
      addrs.add(p.address());
    }
  }

  @AfterEach
  void stop() {
    pservers.forEach(LocalPserver::close);
  }

  private PServerClient client(boolean selected) {
    return PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(selected)).blockBytes(BLOCK).build();
  }

  private static ByteBuffer f32(int n, float base) {
    ByteBuffer b = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      b.putFloat(4 * i, base + i);
    }
    return b;
  }

  private static float[] floats(Parameter p) {
    ByteBuffer b = p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN);
    float[] v = new float[b.remaining() / 4];
    b.asFloatBuffer().get(v);
    return v;
  }

  /** SGD with learning rate 1 (the empty config): w - g. */
  private static float[] minus(float[] w, float[] g) {
    float[] r = new float[w.length];
    for (int i = 0; i < w.length; i++) {
      r[i] = w[i] - g[i];
    }
    return r;
  }

  @Test
  void oddSizedParametersAreSplitOverEveryPserverAndComeBackWhole() {
    int n = 100; // 400 bytes: 6 blocks of 16 floats and one of 4, on 3 pservers
    try (PServerClient c = client(true)) {
      c.beginInitParams();
      c.initParams(List.of(
          new ParameterWithConfig(new Parameter("big", ElementType.FLOAT32, f32(n, 0)), new byte[0]),
          new ParameterWithConfig(new Parameter("small", ElementType.FLOAT32, f32(10, 1000)), new byte[0])));
      c.finishInitParams();
      for (LocalPserver p : pservers) {
        List<String> held = p.service.parameterNames();
        assertTrue(held.stream().anyMatch(s -> s.startsWith("big#")), "pserver " + p.index + " holds " + held);
      }
      int blocks = pservers.stream().mapToInt(p -> (int) p.service.parameterNames().stream().filter(s -> s.matches("big#\\d+")).count()).sum();
      assertEquals(7, blocks);
      assertEquals(List.of("small"), pservers.get(c.partition("small")).service.parameterNames().stream().filter(s -> s.startsWith("small")).toList(),
          "a parameter smaller than a block is stored whole on its hash pserver");

      float[] w = floats(c.getParam("big"));
      assertArrayEquals(floats(new Parameter("x", ElementType.FLOAT32, f32(n, 0))), w);
      float[] g = floats(new Parameter("g", ElementType.FLOAT32, f32(n, 0.5f)));
      c.sendGrads(List.of(new Gradient("big", ElementType.FLOAT32, f32(n, 0.5f)), new Gradient("small", ElementType.FLOAT32, f32(10, 1))));
      assertArrayEquals(minus(w, g), floats(c.getParam("big")));
      assertArrayEquals(new float[] {999, 999, 999, 999, 999, 999, 999, 999, 999, 999}, floats(c.getParam("small")));
    }
  }

  @Test
  void aTrainerThatNeverSawTheLayoutFindsItAndOneElementBlocksWork() {
    try (PServerClient init = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).blockBytes(8).build()) {
      init.beginInitParams();
      ByteBuffer longs = ByteBuffer.allocate(8 * 5).order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < 5; i++) {
        longs.putLong(8 * i, 10 * i);
      }
      init.initParam(new ParameterWithConfig(new Parameter("ids", ElementType.INT64, longs), new byte[0]));
      init.finishInitParams();
    }
    try (PServerClient late = PServerClient.builder(PServerDirectory.of(addrs)).blockBytes(8).build()) {
      Parameter p = late.getParam("ids");
      assertEquals(ElementType.INT64, p.type());
      ByteBuffer b = p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < 5; i++) {
        assertEquals(10L * i, b.getLong(8 * i));
      }
      ByteBuffer ones = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN);
      for (int i = 0; i < 5; i++) {
        ones.putLong(8 * i, 1);
      }
      late.sendGrads(List.of(new Gradient("ids", ElementType.INT64, ones)));
      ByteBuffer after = late.getParam("ids").content().duplicate().order(ByteOrder.LITTLE_ENDIAN);
      assertEquals(39L, after.getLong(32));
    }
  }

  @Test
  void onePserversBlocksAreRecoveredFromItsCheckpoint() throws Exception {
    int n = 64;
    try (PServerClient c = client(true)) {
      c.beginInitParams();
      c.initParam(new ParameterWithConfig(new Parameter("emb", ElementType.FLOAT32, f32(n, 0)), new byte[0]));
      c.finishInitParams();
      c.sendGrads(List.of(new Gradient("emb", ElementType.FLOAT32, f32(n, 1))));
      float[] saved = floats(c.getParam("emb"));
      for (LocalPserver p : pservers) {
        p.service.checkpoint();
      }
      LocalPserver victim = pservers.get(1);
      victim.crash();
      victim.start(true);
      assertTrue(victim.service.status().parameterCount() > 0);
      assertArrayEquals(saved, floats(c.getParam("emb")), "the whole parameter, with the recovered blocks");
      c.sendGrads(List.of(new Gradient("emb", ElementType.FLOAT32, f32(n, 1))));
      assertArrayEquals(minus(saved, floats(new Parameter("g", ElementType.FLOAT32, f32(n, 1)))), floats(c.getParam("emb")));
    }
  }

  @Test
  void badNamesAndSizesAreRefusedClearly() {
    try (PServerClient c = client(true)) {
      assertThrows(IllegalArgumentException.class,
          () -> c.initParam(new ParameterWithConfig(new Parameter("a#1", ElementType.FLOAT32, f32(1, 0)), new byte[0])));
      c.initParam(new ParameterWithConfig(new Parameter("big", ElementType.FLOAT32, f32(40, 0)), new byte[0]));
      c.finishInitParams();
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
          () -> c.sendGrads(List.of(new Gradient("big", ElementType.FLOAT32, f32(39, 0)))));
      assertTrue(e.getMessage().contains("big"), e.getMessage());
      PServerCallException missing = assertThrows(PServerCallException.class, () -> c.getParam("nope"));
      assertEquals(io.grpc.Status.Code.NOT_FOUND, missing.status().getCode());
    }
  }
}
