package org.pserver.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.Seed;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.cluster.KVStore;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;

/** The transport-free service: policies that are easiest to see without gRPC in the way. */
class ServiceTest {
  @TempDir Path dir;

  private Service service(boolean allowNonFinite, Duration interval, CheckpointManager cm) {
    return new Service(new Service.Options(0, Kernels.get(), interval, allowNonFinite, Duration.ofHours(1)), cm, null, Service.WriteGate.OPEN);
  }

  private static ByteBuffer f32(float... v) {
    ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < v.length; i++) {
      b.putFloat(4 * i, v[i]);
    }
    return b;
  }

  @Test
  void nonFiniteGradientsAreAppliedOnlyWhenAllowed() {
    try (Service s = service(true, Duration.ZERO, null)) {
      s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1, 2)), null));
      s.finishInitParams();
      s.sendGrad(new Gradient("w", ElementType.FLOAT32, f32(Float.NaN, 1)), null, 0, 0);
      ByteBuffer w = s.getParam("w", Long.MAX_VALUE).content();
      assertTrue(Float.isNaN(w.getFloat(0)));
      assertEquals(1f, w.getFloat(4));
    }
  }

  /**
   * Every update adds the same value to every element, so a consistent copy always has equal
   * elements; a torn one (part before, part after an update) would not.
   */
  @Test
  void readsAreNeverTorn() throws Exception {
    int n = 1 << 16;
    try (Service s = service(false, Duration.ZERO, null)) {
      s.initParam(new ParameterWithConfig(new Parameter("c", ElementType.INT64, ByteBuffer.allocate(8 * n)), null));
      s.finishInitParams();
      ByteBuffer ones = ByteBuffer.allocateDirect(8 * n).order(ByteOrder.nativeOrder());
      for (int i = 0; i < n; i++) {
        ones.putLong(8 * i, 1);
      }
      AtomicBoolean done = new AtomicBoolean();
      AtomicReference<String> torn = new AtomicReference<>();
      Thread reader = new Thread(() -> {
        int reads = 0;
        while (!done.get() || reads < 50) {
          ByteBuffer c = s.getParam("c", Long.MAX_VALUE).content();
          long first = c.getLong(0);
          for (int i = 1; i < n; i++) {
            if (c.getLong(8 * i) != first) {
              torn.set("element " + i + " is " + c.getLong(8 * i) + " but element 0 is " + first);
              return;
            }
          }
          reads++;
        }
      });
      reader.start();
      for (int k = 0; k < 300; k++) {
        s.sendGrad(new Gradient("c", ElementType.INT64, ones.duplicate()), null, 0, 0);
      }
      done.set(true);
      reader.join();
      assertEquals(null, torn.get());
      assertEquals(-300, s.getParam("c", Long.MAX_VALUE).content().getLong(0));
    }
  }

  @Test
  void periodicCheckpointsHappen() throws Exception {
    CheckpointManager cm = new CheckpointManager(dir, 0, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3));
    try (Service s = service(false, Duration.ofMillis(100), cm)) {
      s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
      assertEquals(null, s.status().lastCheckpoint(), "no checkpoints before initialization");
      s.finishInitParams();
      long until = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      CheckpointMeta first = null;
      while ((first = s.status().lastCheckpoint()) == null && System.nanoTime() < until) {
        Thread.sleep(20);
      }
      assertTrue(first != null, "a periodic checkpoint within 10 s");
      CheckpointMeta second = first;
      while ((second = s.status().lastCheckpoint()).equals(first) && System.nanoTime() < until) {
        Thread.sleep(20);
      }
      assertNotEquals(first, second, "and another one after it");
    }
  }

  @Test
  void aRestoredServiceKeepsTakingPeriodicCheckpoints() throws Exception {
    KVStore kv = new LocalKVStore(dir);
    try (Service s = service(false, Duration.ZERO, new CheckpointManager(dir, 0, kv, Kernels.get(), Duration.ofSeconds(3)))) {
      s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
      s.finishInitParams(); // closing takes the final checkpoint
    }
    CheckpointManager cm = new CheckpointManager(dir, 0, kv, Kernels.get(), Duration.ofSeconds(3));
    Checkpoint restored = cm.recover().orElseThrow();
    CheckpointMeta saved = restored.meta();
    try (Service s = new Service(new Service.Options(0, Kernels.get(), Duration.ofMillis(100), false, Duration.ofHours(1)), cm, restored, Service.WriteGate.OPEN)) {
      // Never initialized by a trainer: the periodic checkpoints must start from the restore alone.
      long until = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (s.status().lastCheckpoint().uuid().equals(saved.uuid()) && System.nanoTime() < until) {
        Thread.sleep(20);
      }
      CheckpointMeta next = s.status().lastCheckpoint();
      assertNotEquals(saved.uuid(), next.uuid(), "a periodic checkpoint after the restore");
      assertEquals(next, CheckpointMeta.fromJson(kv.get(Seed.checkpointKey(0), Duration.ofSeconds(1))), "and it is published");
    }
  }

  @Test
  void racingCheckpointsLeaveStatusReportingThePublishedOne() throws Exception {
    KVStore kv = new LocalKVStore(dir);
    try (Service s = service(false, Duration.ofMillis(1), new CheckpointManager(dir, 0, kv, Kernels.get(), Duration.ofSeconds(3)))) {
      s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
      s.finishInitParams(); // periodic checkpoints every millisecond race the on-demand ones below
      ExecutorService pool = Executors.newFixedThreadPool(2);
      try {
        List<Future<?>> fs = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
          fs.add(pool.submit(() -> {
            for (int i = 0; i < 20; i++) {
              s.checkpoint();
            }
            return null;
          }));
        }
        for (Future<?> f : fs) {
          f.get(60, TimeUnit.SECONDS);
        }
      } finally {
        pool.shutdownNow();
      }
      CheckpointMeta last = s.shutdown(); // stops the periodic ones, then takes the final one
      assertEquals(last, CheckpointMeta.fromJson(kv.get(Seed.checkpointKey(0), Duration.ofSeconds(1))));
      assertEquals(last, s.status().lastCheckpoint());
    }
  }

  /**
   * Whether the periodic checkpoint thread is parked in a periodic run before it takes its
   * checkpoint (on a parameter's lock, while it expires old dedup records).
   */
  private static boolean periodicRunIsBlockedBeforeTaking() {
    return Thread.getAllStackTraces().entrySet().stream().anyMatch(e -> e.getKey().getName().equals("pserver-0-checkpoint")
        && e.getKey().getState() == Thread.State.WAITING
        && java.util.Arrays.stream(e.getValue()).anyMatch(f -> f.getMethodName().equals("periodicCheckpoint"))
        && java.util.Arrays.stream(e.getValue()).noneMatch(f -> f.getClassName().equals(CheckpointManager.class.getName())));
  }

  /** Streams {@code w} out, stalling with its lock held until {@code release} counts down. */
  private static CompletableFuture<Void> stalledReader(WeightsSource w, CountDownLatch release) {
    return CompletableFuture.runAsync(() -> {
      try {
        w.writeTo(new java.io.OutputStream() {
          @Override
          public void write(int b) {}

          @Override
          public void write(byte[] b, int off, int len) {
            try {
              release.await();
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
          }
        }, new byte[8]);
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    });
  }

  @Test
  void noPeriodicCheckpointRunsAfterShutdownReturns() throws Exception {
    KVStore kv = new LocalKVStore(dir);
    Service s = service(false, Duration.ofMillis(20), new CheckpointManager(dir, 0, kv, Kernels.get(), Duration.ofSeconds(3)));
    s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
    s.finishInitParams();
    WeightsSource w = s.openParams(List.of("w"), Long.MAX_VALUE).get(0);
    // A reader stalls holding the lock of "w" until a periodic run stops on it before taking its
    // checkpoint (if the run stopped inside its checkpoint instead, try again).
    CountDownLatch release = null;
    CompletableFuture<Void> reader = null;
    for (int attempt = 0; attempt < 50 && reader == null; attempt++) {
      CountDownLatch r = new CountDownLatch(1);
      CompletableFuture<Void> f = stalledReader(w, r);
      long until = System.nanoTime() + Duration.ofMillis(500).toNanos();
      while (!periodicRunIsBlockedBeforeTaking() && System.nanoTime() < until) {
        Thread.sleep(5);
      }
      if (periodicRunIsBlockedBeforeTaking()) {
        release = r;
        reader = f;
      } else {
        r.countDown();
        f.get(10, TimeUnit.SECONDS);
      }
    }
    assertTrue(reader != null, "a periodic run waits for the reader before taking its checkpoint");
    CompletableFuture<CheckpointMeta> stopping = CompletableFuture.supplyAsync(s::shutdown);
    Thread.sleep(200); // shutdown gets as far as it can while the reader stalls
    release.countDown();
    reader.get(10, TimeUnit.SECONDS);
    CheckpointMeta last = stopping.get(10, TimeUnit.SECONDS);
    Thread.sleep(100); // room for a late periodic checkpoint to publish
    assertEquals(last, CheckpointMeta.fromJson(kv.get(Seed.checkpointKey(0), Duration.ofSeconds(1))),
        "the final checkpoint is the last one published");
    assertEquals(last, s.status().lastCheckpoint());
  }

  /** A gate the test closes, and a store that fences like etcd: it refuses puts while closed. */
  private static final class Fence implements Service.WriteGate, KVStore {
    final KVStore inner;
    volatile String refusal;

    Fence(KVStore inner) {
      this.inner = inner;
    }

    @Override
    public String refusal() {
      return refusal;
    }

    @Override
    public byte[] get(String key, Duration t) throws IOException {
      return inner.get(key, t);
    }

    @Override
    public void put(String key, byte[] v, Duration t, boolean lease) throws IOException {
      if (refusal != null) {
        throw new IOException("fenced: " + refusal);
      }
      inner.put(key, v, t, lease);
    }
  }

  private static void assertRefused(PServerException.Code code, String message, Executable call) {
    PServerException e = assertThrows(PServerException.class, call);
    assertEquals(code, e.code(), e.getMessage());
    assertEquals(message, e.getMessage());
  }

  private List<Path> checkpointFiles() throws IOException {
    try (Stream<Path> st = Files.list(dir)) {
      return st.filter(p -> p.toString().endsWith(".ckpt")).toList();
    }
  }

  @Test
  void aFencedServiceAcknowledgesNoInitializationAndWritesNoCheckpointFile() throws Exception {
    Fence fence = new Fence(new LocalKVStore(dir));
    CheckpointManager cm = new CheckpointManager(dir, 0, fence, Kernels.get(), Duration.ofSeconds(3));
    String refused = "pserver 0 is not accepting writes: lease lost";
    try (Service s = new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), cm, null, fence)) {
      fence.refusal = "lease lost";
      ParameterWithConfig w = new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null);
      assertRefused(PServerException.Code.UNAVAILABLE, refused, () -> s.initParam(w));
      assertEquals(List.of(), s.parameterNames());
      fence.refusal = null;
      s.initParam(w);
      fence.refusal = "lease lost";
      assertRefused(PServerException.Code.UNAVAILABLE, refused, s::finishInitParams);
      assertFalse(s.isInitialized());
      fence.refusal = null;
      s.finishInitParams();
      CheckpointMeta a = s.checkpoint();
      fence.refusal = "lease lost";
      assertRefused(PServerException.Code.UNAVAILABLE, refused, s::checkpoint);
      assertEquals(List.of(Path.of(a.path())), checkpointFiles(), "no file written for a checkpoint that cannot be published");
      assertEquals(a, s.status().lastCheckpoint());
      fence.refusal = null;
    }
  }

  @Test
  void aPushAppliedWhileOwnershipIsLostIsNotAcknowledgedAndItsRetryIsDeduplicated() {
    AtomicInteger asked = new AtomicInteger();
    AtomicReference<String> after = new AtomicReference<>("lease lost");
    // Open when the push is admitted, closed when it is about to be acknowledged.
    Service.WriteGate gate = () -> asked.incrementAndGet() == 1 ? null : after.get();
    try (Service s = new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), null, null, gate)) {
      after.set(null);
      s.initParam(new ParameterWithConfig(new Parameter("c", ElementType.INT64, ByteBuffer.allocate(8)), null));
      s.finishInitParams();
      asked.set(0);
      after.set("lease lost");
      ByteBuffer one = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 1);
      PServerException e = assertThrows(PServerException.class, () -> s.sendGrad(new Gradient("c", ElementType.INT64, one.duplicate()), "t", 1, 0));
      assertEquals(PServerException.Code.UNAVAILABLE, e.code());
      assertEquals("pserver 0 is not accepting writes: lease lost; this push may have been applied: "
          + "retry it with its trainer id and sequence number, which are deduplicated", e.getMessage());
      after.set(null);
      assertTrue(s.sendGrad(new Gradient("c", ElementType.INT64, one.duplicate()), "t", 1, 0), "the retry is a duplicate");
      assertEquals(-1, s.getParam("c", Long.MAX_VALUE).content().getLong(0), "applied exactly once");
    }
  }

  @Test
  void aWaitForInitializationEndsOnCancellationAndOnEndWaits() throws Exception {
    try (Service s = service(false, Duration.ZERO, null)) {
      s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
      CompletableFuture<Void> cancelled = new CompletableFuture<>();
      CompletableFuture<PServerException> cancelledReader = CompletableFuture.supplyAsync(
          () -> assertThrows(PServerException.class, () -> s.getParams(List.of("w"), Long.MAX_VALUE, cancelled)));
      CompletableFuture<PServerException> plainReader = CompletableFuture.supplyAsync(
          () -> assertThrows(PServerException.class, () -> s.openParams(List.of("w"), Long.MAX_VALUE)));
      Thread.sleep(200);
      assertFalse(cancelledReader.isDone() || plainReader.isDone(), "both wait for initialization");
      cancelled.complete(null);
      PServerException c = cancelledReader.get(5, TimeUnit.SECONDS);
      assertEquals(PServerException.Code.CANCELLED, c.code(), c.getMessage());
      assertFalse(plainReader.isDone(), "the other reader was not cancelled");
      s.endWaits();
      PServerException u = plainReader.get(5, TimeUnit.SECONDS);
      assertEquals(PServerException.Code.UNAVAILABLE, u.code(), u.getMessage());
      assertEquals("pserver 0 is shutting down", u.getMessage());
      PServerException late = assertThrows(PServerException.class, () -> s.getParam("w", Long.MAX_VALUE));
      assertEquals(PServerException.Code.UNAVAILABLE, late.code(), "waits end from then on too");
    }
  }

  @Test
  void aFailedFinalCheckpointIsAnErrorAndTheServiceStopsAnyway() throws Exception {
    Fence fence = new Fence(new LocalKVStore(dir));
    CheckpointManager cm = new CheckpointManager(dir, 0, fence, Kernels.get(), Duration.ofSeconds(3));
    Service s = new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), cm, null, Service.WriteGate.OPEN);
    s.initParam(new ParameterWithConfig(new Parameter("w", ElementType.FLOAT32, f32(1)), null));
    s.finishInitParams();
    CheckpointMeta a = s.checkpoint();
    s.sendGrad(new Gradient("w", ElementType.FLOAT32, f32(1)), null, 0, 0);
    fence.refusal = "disk on fire"; // the store refuses: the final checkpoint cannot be published
    PServerException e = assertThrows(PServerException.class, s::shutdown);
    assertEquals(PServerException.Code.UNAVAILABLE, e.code());
    assertTrue(e.getMessage().startsWith("final checkpoint failed: checkpoint failed: fenced: disk on fire"), e.getMessage());
    assertEquals(List.of(Path.of(a.path())), checkpointFiles());
    assertRefused(PServerException.Code.UNAVAILABLE, "pserver 0 is shutting down",
        () -> s.sendGrad(new Gradient("w", ElementType.FLOAT32, f32(1)), null, 0, 0));
    assertEquals(null, s.shutdown(), "stopped: a second shutdown has nothing to do");
  }

  @Test
  void initParamRacingFinishInitParamsIsAcknowledgedOnlyIfItIsPartOfTheInitializedModel() throws Exception {
    for (int round = 0; round < 20; round++) {
      try (Service s = service(false, Duration.ZERO, null)) {
        int threads = 4;
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        CountDownLatch go = new CountDownLatch(1);
        Set<String> acknowledged = ConcurrentHashMap.newKeySet();
        try {
          List<Future<?>> fs = new ArrayList<>();
          for (int t = 0; t < threads; t++) {
            int id = t;
            fs.add(pool.submit(() -> {
              go.await();
              for (int i = 0; ; i++) {
                String name = "p" + id + "." + i;
                try {
                  s.initParam(new ParameterWithConfig(new Parameter(name, ElementType.FLOAT32, f32(1)), null));
                  acknowledged.add(name);
                } catch (PServerException e) {
                  assertEquals(Seed.ALREADY_INITIALIZED, e.getMessage());
                  return null;
                }
              }
            }));
          }
          go.countDown();
          Thread.sleep(round % 5);
          s.finishInitParams();
          List<String> atFinish = s.parameterNames();
          for (Future<?> f : fs) {
            f.get(30, TimeUnit.SECONDS);
          }
          assertEquals(new TreeSet<>(acknowledged), new TreeSet<>(atFinish), "round " + round);
          assertEquals(atFinish, s.parameterNames(), "nothing was added after initialization finished");
        } finally {
          pool.shutdownNow();
        }
      }
    }
  }

  @Test
  void twoInitParamsOfOneNameAtOnceStoreExactlyOneOfThem() throws Exception {
    int threads = 4;
    try (Service s = service(false, Duration.ZERO, null)) {
      ExecutorService pool = Executors.newFixedThreadPool(threads);
      Map<String, Float> winnerOf = new HashMap<>();
      try {
        for (int round = 0; round < 50; round++) {
          String name = "w" + round;
          CyclicBarrier go = new CyclicBarrier(threads);
          List<Future<Float>> fs = new ArrayList<>();
          for (int t = 0; t < threads; t++) {
            float value = t;
            fs.add(pool.submit(() -> {
              go.await();
              try {
                s.initParam(new ParameterWithConfig(new Parameter(name, ElementType.FLOAT32, f32(value)), null));
                return value;
              } catch (PServerException e) {
                assertEquals(PServerException.Code.ALREADY_EXISTS, e.code(), e.getMessage());
                assertEquals("parameter: " + name + " already exists", e.getMessage());
                return null;
              }
            }));
          }
          List<Float> winners = new ArrayList<>();
          for (Future<Float> f : fs) {
            Float v = f.get(30, TimeUnit.SECONDS);
            if (v != null) {
              winners.add(v);
            }
          }
          assertEquals(1, winners.size(), name + ": " + winners);
          winnerOf.put(name, winners.get(0));
        }
      } finally {
        pool.shutdownNow();
      }
      s.finishInitParams();
      for (Map.Entry<String, Float> w : winnerOf.entrySet()) {
        assertEquals(w.getValue(), s.getParam(w.getKey(), Long.MAX_VALUE).content().getFloat(0), w.getKey() + " holds the winner's value");
      }
    }
  }

  /**
   * A checkpoint streams the parameters from off-heap memory to the file: for a 256 MB model the
   * heap allocation on the checkpointing thread stays a few megabytes at most, so there is never a
   * second copy of the model in memory.
   */
  @Test
  void checkpointsDoNotCopyTheModel() throws Exception {
    CheckpointManager cm = new CheckpointManager(dir, 0, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3));
    com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    try (Service s = service(false, Duration.ZERO, cm)) {
      for (int i = 0; i < 4; i++) {
        s.initParam(new ParameterWithConfig(new Parameter("p" + i, ElementType.FLOAT32, ByteBuffer.allocateDirect(64 << 20)), null));
      }
      s.finishInitParams();
      s.checkpoint(); // warm up class loading and JIT
      long before = threads.getCurrentThreadAllocatedBytes();
      CheckpointMeta m = s.checkpoint();
      long allocated = threads.getCurrentThreadAllocatedBytes() - before;
      assertTrue(allocated < 4 << 20, "checkpointing 256 MB allocated " + allocated + " heap bytes");
      assertTrue(java.nio.file.Files.size(Path.of(m.path())) > 256L << 20);
      assertEquals(List.of("p0", "p1", "p2", "p3"), s.parameterNames());
    }
  }
}
