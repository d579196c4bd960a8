package org.pserver.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.rpc.DropReplies;
import org.pserver.testing.LocalPserver;

/** The trainer client against real (in-JVM, Netty) pservers, with faults injected. */
class PServerClientTest {
  @TempDir Path dir;
  final List<LocalPserver> running = new ArrayList<>();

  @AfterEach
  void stopAll() {
    running.forEach(LocalPserver::close);
  }

  private List<String> start(int n, DropReplies dropper) throws Exception {
    List<String> addrs = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      LocalPserver r = new LocalPserver(i, dir, dropper);
      running.add(r);
      addrs.add(r.address());
    }
    return addrs;
  }

  private static ByteBuffer i64(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < v.length; i++) {
      b.putLong(8 * i, v[i]);
    }
    return b;
  }

  private static long[] longs(Parameter p) {
    ByteBuffer b = p.content().duplicate().order(ByteOrder.LITTLE_ENDIAN);
    long[] v = new long[b.remaining() / 8];
    for (int i = 0; i < v.length; i++) {
      v[i] = b.getLong(8 * i);
    }
    return v;
  }

  private static ParameterWithConfig counter(String name, int n) {
    return new ParameterWithConfig(new Parameter(name, ElementType.INT64, i64(new long[n])), new byte[0]);
  }

  @Test
  void partitionIsTheSeedsFnv1a() {
    assertEquals(0x811c9dc5, Partitioner.fnv1a32(""));
    assertEquals(0xe40c292c, Partitioner.fnv1a32("a"));
    assertEquals(0xbf9cf968, Partitioner.fnv1a32("foobar"));
    assertEquals(Integer.remainderUnsigned(0xbf9cf968, 3), Partitioner.partition("foobar", 3));
    assertTrue(Partitioner.partition("\u00e9t\u00e9", 7) >= 0, "non-ASCII names hash their UTF-8 bytes");
    assertThrows(IllegalArgumentException.class, () -> Partitioner.partition("x", 0));
  }

  @Test
  void parametersSpreadByHashAndComeBackInTheOrderAsked() throws Exception {
    List<String> addrs = start(3, null);
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertTrue(c.beginInitParams());
      List<ParameterWithConfig> params = new ArrayList<>();
      for (int i = 0; i < 12; i++) {
        params.add(counter("p" + i, 4));
      }
      c.initParams(params);
      c.finishInitParams();
      for (LocalPserver r : running) {
        long expected = params.stream().filter(p -> Partitioner.partition(p.param().name(), 3) == r.index).count();
        assertEquals(expected, r.service.status().parameterCount(), "pserver " + r.index);
      }
      List<Gradient> grads = new ArrayList<>();
      for (int i = 0; i < 12; i++) {
        grads.add(new Gradient("p" + i, ElementType.INT64, i64(i, i, i, i)));
      }
      c.sendGrads(grads);
      List<Parameter> got = c.getParams(List.of("p11", "p0", "p5"));
      assertEquals(List.of("p11", "p0", "p5"), got.stream().map(Parameter::name).toList());
      assertArrayEquals(new long[] {-11, -11, -11, -11}, longs(got.get(0)));
      assertArrayEquals(new long[] {-5, -5, -5, -5}, longs(got.get(2)));
      assertEquals(List.of(), c.getParams(List.of()));
    }
  }

  /**
   * Five percent of push replies are lost after the pserver applied the push. The client retries
   * with the same sequence number and the pserver acknowledges the repeat without applying it, so
   * with deterministic gradients the result is exact: nothing lost, nothing applied twice.
   */
  @Test
  void lostRepliesNeitherLoseNorDoubleApplyUpdates() throws Exception {
    DropReplies dropper = new DropReplies("pserver.PServer/SendGrads", 0.05, 42);
    List<String> addrs = start(2, dropper);
    int trainers = 4, steps = 150;
    List<String> names = List.of("a", "b", "c", "d", "e");
    try (PServerClient init = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      init.beginInitParams();
      for (String n : names) {
        init.initParam(counter(n, 16));
      }
      init.finishInitParams();
    }
    ExecutorService pool = Executors.newFixedThreadPool(trainers);
    List<PServerClient> clients = new ArrayList<>();
    try {
      List<Future<?>> fs = new ArrayList<>();
      for (int t = 0; t < trainers; t++) {
        PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).backoff(Duration.ofMillis(5), Duration.ofMillis(50)).build();
        clients.add(c);
        int trainer = t;
        fs.add(pool.submit(() -> {
          for (int s = 1; s <= steps; s++) {
            List<Gradient> grads = new ArrayList<>();
            for (int k = 0; k < names.size(); k++) {
              long[] g = new long[16];
              java.util.Arrays.fill(g, (trainer + 1) * (k + 1));
              grads.add(new Gradient(names.get(k), ElementType.INT64, i64(g)));
            }
            c.sendGrads(grads);
          }
        }));
      }
      for (Future<?> f : fs) {
        f.get(120, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
      clients.forEach(PServerClient::close);
    }
    assertTrue(dropper.dropped() > 10, "only " + dropper.dropped() + " replies were dropped");
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).build()) {
      List<Parameter> got = c.getParams(names);
      for (int k = 0; k < names.size(); k++) {
        long want = -(long) steps * (k + 1) * (1 + 2 + 3 + 4);
        long[] expected = new long[16];
        java.util.Arrays.fill(expected, want);
        assertArrayEquals(expected, longs(got.get(k)), names.get(k) + " after " + dropper.dropped() + " dropped replies");
      }
    }
  }

  @Test
  void aPserverRestartingFromItsCheckpointIsFollowedWithoutManualAction() throws Exception {
    List<String> addrs = start(2, null);
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true))
        .backoff(Duration.ofMillis(10), Duration.ofMillis(200)).build()) {
      c.beginInitParams();
      c.initParams(List.of(counter("x", 2), counter("y", 2), counter("z", 2)));
      c.finishInitParams();
      int victim = c.partition("x");
      LocalPserver r = running.get(victim);
      c.sendGrads(List.of(new Gradient("x", ElementType.INT64, i64(1, 1))));
      r.service.checkpoint();
      r.crash();
      Thread restarter = new Thread(() -> {
        try {
          Thread.sleep(300);
          r.start(true);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      restarter.start();
      c.sendGrads(List.of(new Gradient("x", ElementType.INT64, i64(2, 2))));  // retried until it is back
      restarter.join();
      assertArrayEquals(new long[] {-3, -3}, longs(c.getParam("x")));
    }
  }

  @Test
  void aPserverThatCameBackEmptyIsReinitializedFromTheTrainersCopy() throws Exception {
    List<String> addrs = start(2, null);
    Map<String, long[]> local = new ConcurrentHashMap<>();
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true))
        .backoff(Duration.ofMillis(10), Duration.ofMillis(200))
        .reinitSource(List.of("x", "y"), name -> new ParameterWithConfig(new Parameter(name, ElementType.INT64, i64(local.get(name))), new byte[0]))
        .build()) {
      c.beginInitParams();
      c.initParams(List.of(counter("x", 2), counter("y", 2)));
      c.finishInitParams();
      c.sendGrads(List.of(new Gradient("x", ElementType.INT64, i64(5, 5))));
      local.put("x", longs(c.getParam("x")));
      local.put("y", longs(c.getParam("y")));
      LocalPserver r = running.get(c.partition("x"));
      r.crash();
      r.start(false); // no checkpoint: empty
      assertFalse(r.service.isInitialized());
      c.sendGrads(List.of(new Gradient("x", ElementType.INT64, i64(1, 1))));
      assertTrue(r.service.isInitialized());
      assertArrayEquals(new long[] {-6, -6}, longs(c.getParam("x")));
    }
  }

  @Test
  void aRestartedTrainerRejoinsWithoutReinitializing() throws Exception {
    List<String> addrs = start(2, null);
    try (PServerClient first = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertTrue(first.beginInitParams());
      first.initParam(counter("w", 3));
      first.finishInitParams();
      first.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1, 2, 3))));
    }
    // The same trainer process started again (it is still "the selected one"): it must not init.
    try (PServerClient again = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertFalse(again.beginInitParams());
      assertArrayEquals(new long[] {-1, -2, -3}, longs(again.getParam("w")));
      again.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1, 1, 1))));
      assertArrayEquals(new long[] {-2, -3, -4}, longs(again.getParam("w")));
    }
  }

  @Test
  void aPserverThatStaysDownFailsWithAnExceptionNamingIt() throws Exception {
    List<String> addrs = start(1, null);
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true))
        .backoff(Duration.ofMillis(10), Duration.ofMillis(50)).retryBudget(Duration.ofMillis(800)).build()) {
      c.beginInitParams();
      c.initParam(counter("w", 1));
      c.finishInitParams();
      running.get(0).crash();
      long t0 = System.nanoTime();
      PServerCallException e = assertThrows(PServerCallException.class,
          () -> c.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1)))));
      long ms = (System.nanoTime() - t0) / 1_000_000;
      assertEquals(0, e.index());
      assertEquals(addrs.get(0), e.address());
      assertEquals(Status.Code.UNAVAILABLE, e.status().getCode());
      assertTrue(e.getMessage().startsWith("pserver 0 (" + addrs.get(0) + "): SendGrads failed after"), e.getMessage());
      assertTrue(ms >= 700 && ms < 5000, "gave up after " + ms + " ms");
    }
  }

  @Test
  void nonRetryableErrorsFailAtOnce() throws Exception {
    List<String> addrs = start(1, null);
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      c.beginInitParams();
      c.initParam(counter("w", 2));
      c.finishInitParams();
      PServerCallException e = assertThrows(PServerCallException.class,
          () -> c.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1)))));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.status().getCode());
      assertTrue(e.getMessage().contains("after 1 attempt"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> c.sendGrads(List.of()));
    }
  }
}
