package org.pserver.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
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
 * one pserver's blocks recovered from its checkpoint, requests cut to the request size. Uses a tiny
 * block size (64 bytes).
 */
class BlocksTest {
  private static final int BLOCK = 64;

  @TempDir Path dir;
  final List<LocalPserver> pservers = new ArrayList<>();
  final List<CallCounter> calls = new ArrayList<>();
  List<String> addrs;

  /** Counts the calls a pserver receives, by method name. */
  static final class CallCounter implements ServerInterceptor {
    final Map<String, AtomicInteger> byMethod = new ConcurrentHashMap<>();

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
      byMethod.computeIfAbsent(call.getMethodDescriptor().getBareMethodName(), k -> new AtomicInteger()).incrementAndGet();
      return next.startCall(call, headers);
    }

    int count(String method) {
      AtomicInteger n = byMethod.get(method);
      return n == null ? 0 : n.get();
    }
  }

  @BeforeEach
  void start() throws Exception {
    addrs = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      CallCounter counter = new CallCounter();
      calls.add(counter);
      LocalPserver p = new LocalPserver(i, dir, counter);
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

  private int total(String method) {
    return calls.stream().mapToInt(c -> c.count(method)).sum();
  }

  @Test
  void pushesAndReadsAreCutIntoRequestsOfAtMostTheRequestSize() {
    int n = 100; // 7 blocks (6 of 64 bytes, one of 16) over 3 pservers: 3, 2 and 2 blocks
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true))
        .blockBytes(BLOCK).requestBytes(2 * BLOCK).build()) {
      c.beginInitParams();
      c.initParam(new ParameterWithConfig(new Parameter("big", ElementType.FLOAT32, f32(n, 0)), new byte[0]));
      c.finishInitParams();
      float[] w = floats(c.getParam("big"));
      int reads = total("GetParams");
      float[] g = floats(new Parameter("g", ElementType.FLOAT32, f32(n, 0.25f)));
      int before = total("SendGrads");
      c.sendGrads(List.of(new Gradient("big", ElementType.FLOAT32, f32(n, 0.25f))));
      // At most 128 bytes per request: the pserver with 3 blocks (64 + 64 + 64 or 16) takes 2.
      int pushes = total("SendGrads") - before;
      assertEquals(4, pushes, "SendGrads requests for 7 blocks at 2 blocks per request (one per pserver without the cut: 3)");
      c.sendGrads(List.of(new Gradient("big", ElementType.FLOAT32, f32(n, 0.25f))));
      assertEquals(pushes, total("SendGrads") - before - pushes, "the same cut every time");
      assertArrayEquals(minus(minus(w, g), g), floats(c.getParam("big")), "every block applied exactly once per push");
      assertEquals(4, reads, "GetParams requests for 7 blocks at 2 blocks per request");
    }
  }

  @Test
  void batchesKeepOrderAndPutAnOversizedItemAlone() {
    assertEquals(List.of(), PServerClient.batches(List.<Integer>of(), i -> i, 10));
    assertEquals(List.of(List.of(4, 6), List.of(3, 3, 3), List.of(11), List.of(1)),
        PServerClient.batches(List.of(4, 6, 3, 3, 3, 11, 1), i -> i, 10));
    assertEquals(List.of(List.of(10), List.of(10)), PServerClient.batches(List.of(10, 10), i -> i, 10));
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
