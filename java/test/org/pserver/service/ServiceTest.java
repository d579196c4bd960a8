package org.pserver.service;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.ElementType;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.checkpoint.CheckpointMeta;
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
