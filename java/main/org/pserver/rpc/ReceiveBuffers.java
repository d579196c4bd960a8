package org.pserver.rpc;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicLong;
import org.pserver.kernels.OffHeap;

/**
 * A pool of off-heap buffers ({@link OffHeap#allocate}: direct, native order, 64-byte aligned) for
 * the one copy a received gradient may need: when its bytes are spread over several network
 * buffers (anything larger than one HTTP/2 frame is), the kernels need them contiguous.
 *
 * <p>Sizes are rounded up to a power of two up to 1 MiB and to a multiple of 1 MiB above, so a
 * parameter pushed again and again reuses the same buffer. Idle buffers are kept up to a byte
 * budget; a buffer released beyond it is dropped (its memory returns when the garbage collector
 * clears it). Thread-safe.
 */
final class ReceiveBuffers {
  private static final int MIN = 4096;
  private static final int MIB = 1 << 20;

  /**
   * The pool every pserver in this JVM shares. Idle budget: a quarter of the direct-memory limit
   * ({@code -XX:MaxDirectMemorySize}, which defaults to the maximum heap), at most 1 GiB: enough
   * to keep one buffer per trainer pushing large parameters without holding the whole limit.
   */
  static final ReceiveBuffers SHARED = new ReceiveBuffers(Math.min(1L << 30, maxDirectMemory() / 4));

  /** The JVM's direct-memory limit, read through the HotSpot diagnostic bean where there is one. */
  static long maxDirectMemory() {
    try {
      String v = java.lang.management.ManagementFactory
          .getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class)
          .getVMOption("MaxDirectMemorySize").getValue();
      long max = Long.parseLong(v);
      if (max > 0) {
        return max;
      }
    } catch (RuntimeException | LinkageError e) {
      // not HotSpot, or no such option: the default below
    }
    return Runtime.getRuntime().maxMemory();
  }

  private final long idleBudget;
  private final ConcurrentHashMap<Integer, ConcurrentLinkedDeque<ByteBuffer>> idle = new ConcurrentHashMap<>();
  private final AtomicLong idleBytes = new AtomicLong();
  private final AtomicLong allocations = new AtomicLong();

  ReceiveBuffers(long idleBudget) {
    this.idleBudget = idleBudget;
  }

  /** The size class of a request for {@code bytes}. */
  static int sizeClass(int bytes) {
    if (bytes <= MIN) {
      return MIN;
    }
    if (bytes <= MIB) {
      return Integer.highestOneBit(bytes - 1) << 1;
    }
    long c = ((long) bytes + MIB - 1) / MIB * MIB;
    return (int) Math.min(c, OffHeap.MAX_BYTES);
  }

  /** A buffer with at least {@code bytes} bytes: position 0, limit {@code bytes}, capacity its class. */
  ByteBuffer acquire(int bytes) {
    int c = sizeClass(bytes);
    ConcurrentLinkedDeque<ByteBuffer> q = idle.get(c);
    ByteBuffer b = q == null ? null : q.pollFirst();
    if (b != null) {
      idleBytes.addAndGet(-c);
    } else {
      b = OffHeap.allocate(c);
      allocations.incrementAndGet();
    }
    return b.clear().limit(bytes);
  }

  /** Gives a buffer from {@link #acquire} back. It must not be used afterwards. */
  void release(ByteBuffer b) {
    int c = b.capacity();
    if (idleBytes.addAndGet(c) > idleBudget) {
      idleBytes.addAndGet(-c);
      return;
    }
    idle.computeIfAbsent(c, k -> new ConcurrentLinkedDeque<>()).offerFirst(b);
  }

  /** Buffers allocated so far (pool misses). */
  long allocations() {
    return allocations.get();
  }

  long idleBytes() {
    return idleBytes.get();
  }
}
