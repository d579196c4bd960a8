package org.pserver.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Proxy;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.pserver.ElementType;
import org.pserver.kernels.UpdateKernelsDifferentialTest.Buffers;
import org.pserver.kernels.UpdateKernelsDifferentialTest.Case;

/**
 * A split update must give exactly the bits of one call over the whole range: every kernel, every
 * element type, both implementations, at odd lengths and offsets, with chunk boundaries that fall
 * on odd elements (not just on the cache-line multiples production uses).
 */
class ParallelKernelsTest {
  private static final int GUARD = 5;
  private static final List<ParallelKernels> MADE = Collections.synchronizedList(new ArrayList<>());

  /** Splits everything longer than 1000 elements, in chunks of a multiple of 37 elements. */
  private static ParallelKernels oddSplits(UpdateKernels inner) {
    ParallelKernels p = new ParallelKernels(inner, 3, 1, 1000, 37);
    MADE.add(p);
    return p;
  }

  @AfterAll
  static void stopHelpers() {
    MADE.forEach(ParallelKernels::shutdown);
  }

  @TestFactory
  Stream<DynamicTest> splitUpdatesAreBitIdentical() {
    List<DynamicTest> tests = new ArrayList<>();
    for (UpdateKernels impl : UpdateKernelsDifferentialTest.implementations()) {
      ParallelKernels split = oddSplits(impl);
      for (Case c : UpdateKernelsDifferentialTest.cases()) {
        for (ElementType t : ElementType.values()) {
          tests.add(DynamicTest.dynamicTest(impl.name() + " " + c.name() + " " + t, () -> {
            for (int len : new int[] {0, 1, 999, 1001, 4099, 20_011}) {
              for (int off : new int[] {0, 3}) {
                long seed = 31L * len + off + 7L * t.code() + c.name().hashCode();
                Buffers in = Buffers.random(t, c.states(), off, len, new SplittableRandom(seed));
                Buffers want = in.copy(), got = in.copy();
                c.op().run(impl, t, want.all(), GUARD + off, len);
                c.op().run(split, t, got.all(), GUARD + off, len);
                String where = split.name() + " " + c.name() + " " + t + " len=" + len + " off=" + off + " seed=" + seed;
                got.assertSame(want, t, where);
                got.assertGuardsUntouched(in, GUARD + off, len, t, where);
              }
            }
          }));
        }
      }
    }
    return tests.stream();
  }

  @Test
  void productionChunkingIsBitIdenticalForAdamAtAnOddLargeSize() {
    for (UpdateKernels impl : UpdateKernelsDifferentialTest.implementations()) {
      ParallelKernels split = new ParallelKernels(impl, 2, 1 << 18);
      MADE.add(split);
      int n = (1 << 20) + 17;
      ByteBuffer[] want = adamBuffers(n, 11), got = adamBuffers(n, 11);
      for (int step = 1; step <= 3; step++) {
        impl.adam(ElementType.FLOAT32, want[0], want[1], want[2], want[3], 0, n, 1e-3 * step, 0.9, 0.999, 1e-8, 1e-4, 0.7, 0);
        split.adam(ElementType.FLOAT32, got[0], got[1], got[2], got[3], 0, n, 1e-3 * step, 0.9, 0.999, 1e-8, 1e-4, 0.7, 0);
      }
      for (int k = 0; k < 4; k++) {
        assertEquals(0, want[k].clear().compareTo(got[k].clear()), impl.name() + ": buffer " + k + " differs");
      }
    }
  }

  @Test
  void reductionsMatch() {
    for (UpdateKernels impl : UpdateKernelsDifferentialTest.implementations()) {
      ParallelKernels split = oddSplits(impl);
      for (ElementType t : ElementType.values()) {
        for (int len : new int[] {0, 5, 1001, 20_011}) {
          Buffers in = Buffers.random(t, 0, 0, len, new SplittableRandom(len + 13L * t.code()));
          ByteBuffer g = in.grad();
          assertEquals(impl.allFinite(t, g, GUARD, len), split.allFinite(t, g, GUARD, len), t + " " + len);
          assertEquals(Double.doubleToLongBits(impl.sumOfSquares(t, g, GUARD, len, 0.5)),
              Double.doubleToLongBits(split.sumOfSquares(t, g, GUARD, len, 0.5)), t + " " + len);
        }
      }
      // One non-finite element in the last chunk is found.
      int n = 20_011;
      ByteBuffer g = ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder());
      assertTrue(split.allFinite(ElementType.FLOAT32, g, 0, n));
      g.putFloat(4 * (n - 1), Float.NaN);
      assertFalse(split.allFinite(ElementType.FLOAT32, g, 0, n));
    }
  }

  /** The ranges the wrapped kernels were called with, and on which threads. */
  private record Calls(List<int[]> ranges, Set<String> threads) {}

  private static UpdateKernels recording(Calls calls) {
    return (UpdateKernels) Proxy.newProxyInstance(
        UpdateKernels.class.getClassLoader(), new Class<?>[] {UpdateKernels.class}, (proxy, m, args) -> {
          if (m.getName().equals("name")) {
            return "recording";
          }
          if (m.getName().equals("accumulate")) {
            calls.ranges().add(new int[] {(Integer) args[3], (Integer) args[4]});
            calls.threads().add(Thread.currentThread().getName());
            return null;
          }
          throw new UnsupportedOperationException(m.getName());
        });
  }

  @Test
  void chunksCoverTheRangeExactlyOnceAndSmallCallsAreNotSplit() {
    Calls calls = new Calls(Collections.synchronizedList(new ArrayList<>()), ConcurrentHashMap.newKeySet());
    ParallelKernels k = new ParallelKernels(recording(calls), 2, 300_000);
    MADE.add(k);
    ByteBuffer p = ByteBuffer.allocateDirect(4 * 2_000_000).order(ByteOrder.nativeOrder());
    ByteBuffer g = ByteBuffer.allocateDirect(4 * 2_000_000).order(ByteOrder.nativeOrder());

    k.accumulate(ElementType.FLOAT32, p, g, 7, 299_999, 1);
    assertEquals(1, calls.ranges().size(), "below the threshold: one call");
    assertEquals(Set.of(Thread.currentThread().getName()), calls.threads(), "on the calling thread");

    calls.ranges().clear();
    k.accumulate(ElementType.FLOAT32, p, g, 11, 1_999_989, 1);
    List<int[]> r = new ArrayList<>(calls.ranges());
    r.sort((a, b) -> Integer.compare(a[0], b[0]));
    assertTrue(r.size() >= 2, "split into chunks");
    int at = 11;
    for (int[] c : r) {
      assertEquals(at, c[0], "chunks are contiguous and disjoint");
      assertTrue(c[1] >= 1);
      if (c != r.get(r.size() - 1)) {
        assertEquals(0, c[1] % 1024, "inner chunks are multiples of 1024 elements");
      }
      at += c[1];
    }
    assertEquals(11 + 1_999_989, at, "the whole range, nothing more");
  }

  @Test
  void badArgumentsAreRefusedBeforeAnyChunkRuns() {
    Calls calls = new Calls(Collections.synchronizedList(new ArrayList<>()), ConcurrentHashMap.newKeySet());
    ParallelKernels k = new ParallelKernels(recording(calls), 2, 10);
    MADE.add(k);
    ByteBuffer p = ByteBuffer.allocateDirect(4 * 1000).order(ByteOrder.nativeOrder());
    ByteBuffer heap = ByteBuffer.allocate(4 * 1000);
    assertThrows(IllegalArgumentException.class, () -> k.accumulate(ElementType.FLOAT32, p, heap, 0, 1000, 1));
    assertThrows(IllegalArgumentException.class, () -> k.accumulate(ElementType.FLOAT32, p, p.duplicate(), 0, 1001, 1));
    assertTrue(calls.ranges().isEmpty());
    assertThrows(IllegalArgumentException.class, () -> new ParallelKernels(k, 2, 10));
    assertThrows(IllegalArgumentException.class, () -> new ParallelKernels(recording(calls), 1, 10));
  }

  @Test
  void withItsHelpersStoppedTheCallerDoesAllTheWork() {
    Calls calls = new Calls(Collections.synchronizedList(new ArrayList<>()), ConcurrentHashMap.newKeySet());
    ParallelKernels k = new ParallelKernels(recording(calls), 4, 1);
    k.shutdown();
    ByteBuffer p = ByteBuffer.allocateDirect(4 * 1_000_000).order(ByteOrder.nativeOrder());
    ByteBuffer g = ByteBuffer.allocateDirect(4 * 1_000_000).order(ByteOrder.nativeOrder());
    k.accumulate(ElementType.FLOAT32, p, g, 0, 1_000_000, 1);
    assertTrue(calls.ranges().size() >= 2);
    assertEquals(Set.of(Thread.currentThread().getName()), calls.threads());
  }

  @Test
  void theThreadSettingDefaultsToTwoAndOneMeansNoSplit() {
    assertEquals(2, Kernels.threads(null, 2));
    assertEquals(2, Kernels.threads(" ", 16));
    assertEquals(1, Kernels.threads(null, 1));
    assertEquals(1, Kernels.threads("1", 8));
    assertEquals(4, Kernels.threads(" 4 ", 2));
    assertThrows(IllegalArgumentException.class, () -> Kernels.threads("0", 2));
    assertThrows(IllegalArgumentException.class, () -> Kernels.threads("two", 2));
    if (Runtime.getRuntime().availableProcessors() > 1 && System.getProperty(Kernels.THREADS_PROPERTY) == null
        && System.getenv(Kernels.THREADS_ENV) == null) {
      ParallelKernels k = assertInstanceOf(ParallelKernels.class, Kernels.get());
      assertEquals(ParallelKernels.DEFAULT_MIN_ELEMENTS, k.minElements());
      assertTrue(k.name().startsWith(k.inner().name()), k.name());
    }
  }

  private static ByteBuffer[] adamBuffers(int n, long seed) {
    SplittableRandom rnd = new SplittableRandom(seed);
    ByteBuffer[] b = new ByteBuffer[4];
    for (int k = 0; k < 4; k++) {
      b[k] = OffHeap.allocate(4 * n);
      for (int i = 0; i < n; i++) {
        b[k].putFloat(4 * i, (float) (k == 3 ? rnd.nextDouble(0, 1) : rnd.nextDouble(-1, 1)));
      }
    }
    return b;
  }
}
