package org.pserver.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
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
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.service.Gradient;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.rpc.DropReplies;
import org.pserver.testing.LocalPserver;
import org.slf4j.LoggerFactory;

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
    try (PServerClient c = reinitializingClient(addrs, local, Duration.ofSeconds(30))) {
      LocalPserver r = initAndCopy(c, local);
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

  private static void initCounters(List<String> addrs, List<String> names, int n) {
    try (PServerClient init = PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true)).build()) {
      assertTrue(init.beginInitParams());
      for (String name : names) {
        init.initParam(counter(name, n));
      }
      init.finishInitParams();
    }
  }

  /**
   * A trainer restarted with the same trainer id (a new client) must have its pushes applied. The
   * pserver remembers the first client's watermark; had the new client numbered its pushes from
   * 1 again, they would have been taken for repeats and dropped.
   */
  @Test
  void aTrainerRestartedWithTheSameIdHasItsPushesApplied() throws Exception {
    List<String> addrs = start(2, null);
    initCounters(addrs, List.of("w"), 2);
    for (int run = 1; run <= 2; run++) {
      try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).trainerId("trainer-7").build()) {
        for (int i = 0; i < 5; i++) {
          c.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1, 10))));
        }
        assertArrayEquals(new long[] {-5L * run, -50L * run}, longs(c.getParam("w")), "after run " + run);
      }
    }
  }

  /**
   * A push the pserver calls a duplicate on its first attempt was never applied: the client says
   * so in a warning. Here a second client with the same id numbers its pushes below the first's,
   * as after a clock that went back.
   */
  @Test
  void aFirstAttemptAnsweredAsDuplicateIsLoggedAsAWarning() throws Exception {
    List<String> addrs = start(1, null);
    initCounters(addrs, List.of("w"), 1);
    try (PServerClient first = PServerClient.builder(PServerDirectory.of(addrs)).trainerId("t").firstSequence(100).build()) {
      for (int i = 0; i < 3; i++) {
        first.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1))));
      }
    }
    Logger logger = (Logger) LoggerFactory.getLogger(PServerClient.class);
    ListAppender<ILoggingEvent> log = new ListAppender<>();
    log.start();
    logger.addAppender(log);
    try (PServerClient behind = PServerClient.builder(PServerDirectory.of(addrs)).trainerId("t").firstSequence(1).build()) {
      behind.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(1))));
      assertArrayEquals(new long[] {-3}, longs(behind.getParam("w")), "the pserver took it for a repeat");
    } finally {
      logger.detachAppender(log);
    }
    assertTrue(log.list.stream().anyMatch(e -> e.getLevel().toString().equals("WARN")
        && e.getFormattedMessage().contains("NOT applied") && e.getFormattedMessage().contains("trainer id t")),
        log.list.toString());
  }

  @Test
  void sequenceNumbersStartFromTheClockAndKeepGrowing() {
    long micros = java.time.temporal.ChronoUnit.MICROS.between(java.time.Instant.EPOCH, java.time.Instant.now());
    long a = PServerClient.firstSequence();
    long b = PServerClient.firstSequence();
    assertTrue(a >= micros && a < micros + 60_000_000L, a + " vs the clock's " + micros);
    assertTrue(b > a);
  }

  /**
   * One client shared by many threads (one client per trainer process): with lost replies and
   * retries, every push of every thread is applied exactly once, so deterministic integer SGD
   * gradients give exact values.
   */
  @Test
  void oneClientSharedByManyThreadsAppliesEveryPushExactlyOnce() throws Exception {
    DropReplies dropper = new DropReplies("pserver.PServer/SendGrads", 0.05, 7);
    List<String> addrs = start(3, dropper);
    List<String> names = List.of("a", "b", "c", "d", "e", "f", "g");
    initCounters(addrs, names, 8);
    int threads = 8, steps = 60;
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).backoff(Duration.ofMillis(5), Duration.ofMillis(50)).build()) {
      List<Future<?>> fs = new ArrayList<>();
      for (int t = 0; t < threads; t++) {
        int thread = t;
        fs.add(pool.submit(() -> {
          for (int s = 1; s <= steps; s++) {
            List<Gradient> grads = new ArrayList<>();
            // Each thread pushes a different subset of the parameters, so pushes to one pserver
            // from several threads interleave with different contents.
            for (int k = 0; k < names.size(); k++) {
              if ((k + thread + s) % 3 != 0) {
                long[] g = new long[8];
                java.util.Arrays.fill(g, (thread + 1) * (k + 1));
                grads.add(new Gradient(names.get(k), ElementType.INT64, i64(g)));
              }
            }
            c.sendGrads(grads);
          }
          return null;
        }));
      }
      for (Future<?> f : fs) {
        f.get(120, TimeUnit.SECONDS);
      }
      List<Parameter> got = c.getParams(names);
      for (int k = 0; k < names.size(); k++) {
        long want = 0;
        for (int t = 0; t < threads; t++) {
          for (int s = 1; s <= steps; s++) {
            if ((k + t + s) % 3 != 0) {
              want -= (long) (t + 1) * (k + 1);
            }
          }
        }
        long[] expected = new long[8];
        java.util.Arrays.fill(expected, want);
        assertArrayEquals(expected, longs(got.get(k)), names.get(k) + " after " + dropper.dropped() + " dropped replies");
      }
    } finally {
      pool.shutdownNow();
    }
    assertTrue(dropper.dropped() > 5, "only " + dropper.dropped() + " replies were dropped");
  }

  /**
   * grpc-java reports a call written to a connection that had already closed (a pserver killed
   * under it) as UNKNOWN "channel closed"; that is a transport failure, retried like UNAVAILABLE.
   * Here the first SendGrads fails that way on the client side, before reaching the pserver.
   */
  @Test
  void aCallOnAClosedChannelIsRetried() throws Exception {
    List<String> addrs = start(1, null);
    initCounters(addrs, List.of("w"), 1);
    AtomicInteger failed = new AtomicInteger();
    ClientInterceptor closedOnce = new ClientInterceptor() {
      @Override
      public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
        if (!method.getFullMethodName().equals("pserver.PServer/SendGrads") || failed.getAndIncrement() > 0) {
          return next.newCall(method, options);
        }
        return new ClientCall<>() {
          private Listener<R> listener;

          @Override
          public void start(Listener<R> l, Metadata headers) {
            listener = l;
          }

          @Override
          public void request(int n) {}

          @Override
          public void cancel(String message, Throwable cause) {}

          @Override
          public void halfClose() {
            listener.onClose(Status.UNKNOWN.withDescription("channel closed").withCause(new java.nio.channels.ClosedChannelException()), new Metadata());
          }

          @Override
          public void sendMessage(Q message) {}
        };
      }
    };
    try (PServerClient c = PServerClient.builder(PServerDirectory.of(addrs)).backoff(Duration.ofMillis(5), Duration.ofMillis(50))
        .channelFactory(a -> NettyChannelBuilder.forTarget(a).usePlaintext().intercept(closedOnce).build()).build()) {
      c.sendGrads(List.of(new Gradient("w", ElementType.INT64, i64(4))));
      assertEquals(2, failed.get(), "one failed attempt, one that went through");
      assertArrayEquals(new long[] {-4}, longs(c.getParam("w")));
    }
    assertFalse(PServerClient.isChannelClosed(Status.UNKNOWN.withDescription("boom")), "a server's own UNKNOWN is not retried");
  }

  private PServerClient reinitializingClient(List<String> addrs, Map<String, long[]> local, Duration callTimeout) {
    return PServerClient.builder(PServerDirectory.of(addrs)).selector(InitSelector.fixed(true))
        .backoff(Duration.ofMillis(10), Duration.ofMillis(200)).callTimeout(callTimeout).retryBudget(Duration.ofSeconds(20))
        .reinitSource(List.of("x", "y"), name -> new ParameterWithConfig(new Parameter(name, ElementType.INT64, i64(local.get(name))), new byte[0]))
        .build();
  }

  /** Initializes x and y, pushes to x, and keeps the trainer's copy in {@code local}; returns x's pserver. */
  private LocalPserver initAndCopy(PServerClient c, Map<String, long[]> local) {
    c.beginInitParams();
    c.initParams(List.of(counter("x", 2), counter("y", 2)));
    c.finishInitParams();
    c.sendGrads(List.of(new Gradient("x", ElementType.INT64, i64(5, 5))));
    local.put("x", longs(c.getParam("x")));
    local.put("y", longs(c.getParam("y")));
    return running.get(c.partition("x"));
  }

  /**
   * Crashes the pserver of x and starts it empty, during a read of x ({@code duringRead}: the
   * read is retrying meanwhile) or before it; the read must return the trainer's copy, re-
   * initialized, within 10 s of the pserver coming back.
   */
  private void readAcrossAComebackEmpty(Duration callTimeout, boolean duringRead) throws Exception {
    List<String> addrs = start(2, null);
    Map<String, long[]> local = new ConcurrentHashMap<>();
    try (PServerClient c = reinitializingClient(addrs, local, callTimeout)) {
      LocalPserver r = initAndCopy(c, local);
      r.crash();
      java.util.concurrent.CompletableFuture<long[]> read = null;
      if (duringRead) {
        read = java.util.concurrent.CompletableFuture.supplyAsync(() -> longs(c.getParam("x")));
        Thread.sleep(300); // the read fails and retries meanwhile
      }
      r.start(false); // no checkpoint: empty
      long t0 = System.nanoTime();
      long[] got = duringRead ? read.get(60, TimeUnit.SECONDS) : longs(c.getParam("x"));
      long ms = (System.nanoTime() - t0) / 1_000_000;
      assertArrayEquals(new long[] {-5, -5}, got);
      assertTrue(r.service.isInitialized());
      assertTrue(ms < 10_000, "the read took " + ms + " ms after the pserver came back");
    }
  }

  /**
   * A read retrying while its pserver is down, which then comes back empty: the pserver would
   * hold the read until its deadline (30 s here) waiting for initialization, and the client's own
   * DEADLINE_EXCEEDED does not say why. The client asks the pserver's Status before retrying and
   * re-initializes it, so the read returns within seconds.
   */
  @Test
  void aReadRetryingWhileItsPserverComesBackEmptyReinitializesIt() throws Exception {
    readAcrossAComebackEmpty(Duration.ofSeconds(30), true);
  }

  /**
   * A read that meets the empty pserver without having failed first waits one call timeout (the
   * pserver holds it), then the client asks the Status and re-initializes it instead of retrying
   * the read until the budget is gone (the pserver's own "not fully initialized" only sometimes
   * beats the client's deadline error).
   */
  @Test
  void aReadOfAPserverThatCameBackEmptyBetweenCallsReinitializesIt() throws Exception {
    readAcrossAComebackEmpty(Duration.ofMillis(700), false);
  }
}
