package org.pserver.kernels;

import java.nio.ByteBuffer;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.pserver.ElementType;

/**
 * {@link UpdateKernels} that split one long update across a few threads: the calling thread plus
 * a small pool of helpers owned by this object. Below {@link #minElements()} elements a call goes
 * straight to the wrapped kernels on the calling thread, so small updates pay nothing.
 *
 * <h2>Why this is safe and exact</h2>
 *
 * The optimizer kernels are element-wise: element i of the parameter and of every state buffer
 * depends only on element i of the inputs and on the call's scalars. So disjoint ranges of one call
 * can run at the same time, and the result is bit-identical to one call over the whole range (the
 * native bodies compute the same IEEE operations in their scalar head and tail as in the vector
 * loop). {@link #sumOfSquares} is a reduction in a fixed order and is therefore never split;
 * {@link #allFinite} is split (its answer does not depend on order).
 *
 * <h2>How a call is split</h2>
 *
 * The range is cut into chunks of at least {@link #MIN_CHUNK} elements, a multiple of 1024 (so
 * every chunk starts on a 64-byte boundary of 4- and 8-byte buffers that start on one: no cache
 * line is written by two threads). Helpers and the caller claim chunks from a shared counter until
 * none are left, then the caller waits for the chunks that helpers claimed. A helper that is busy
 * elsewhere (another parameter's update) claims nothing, and the caller does the work itself:
 * the split never waits for a helper to become free, and never deadlocks.
 *
 * <p>Arguments are checked once over the whole range with the same checks as the wrapped kernels,
 * so a bad call throws {@link IllegalArgumentException} before any element is touched.
 *
 * <p>Thread-safe. Calls on disjoint ranges may still run concurrently from different callers.
 */
public final class ParallelKernels implements UpdateKernels {

  /** The smallest chunk a split produces, in elements. */
  public static final int MIN_CHUNK = 64 * 1024;

  /**
   * The default threshold, in elements: below it the calling thread does the whole update. Chosen
   * by measurement ({@code bench/parallel.sh --full}; float32 Adam and SGD on two threads against
   * one, per-round medians) on two 2-core machines. On a Zen 3 with AVX2 (results in {@code
   * bench/results/zen3-avx2/parallel.md}) two threads won from 512 K elements on (Adam 1.67x,
   * SGD 1.22x; at 1 M 1.72x and 1.37x, at 2 M 1.92x and 1.83x): there Adam is bound by its sqrt and
   * division, and the working set leaves the 512 KiB L2 of one core. On a Zen 4 with AVX-512
   * ({@code bench/results/parallel.md}) they tied from 1 M to 4 M elements (Adam 0.96 to 1.15x,
   * SGD 0.94 to 1.05x) and won from 16 M on. At 1 M elements the split gains a lot where it gains
   * and costs at most a few per cent where it does not; below, SGD lost on both (0.88x and 0.70x
   * at 256 K).
   */
  public static final int DEFAULT_MIN_ELEMENTS = 1 << 20;

  private final UpdateKernels inner;
  private final int threads;
  private final int minElements;
  private final int minChunk;
  private final int chunkQuantum;
  private final ThreadPoolExecutor helpers;

  /**
   * Wraps {@code inner}.
   *
   * @param threads threads per split update, the caller included (at least 2)
   * @param minElements calls shorter than this run on the calling thread alone (at least 1)
   */
  public ParallelKernels(UpdateKernels inner, int threads, int minElements) {
    this(inner, threads, minElements, MIN_CHUNK, 1024);
  }

  /**
   * As above with the smallest chunk and the chunk quantum (every chunk but the last is a multiple
   * of it) chosen: tests use small and odd ones.
   */
  ParallelKernels(UpdateKernels inner, int threads, int minElements, int minChunk, int chunkQuantum) {
    if (inner instanceof ParallelKernels) {
      throw new IllegalArgumentException("already parallel: " + inner.name());
    }
    if (threads < 2) {
      throw new IllegalArgumentException("threads must be >= 2, got " + threads);
    }
    if (minElements < 1 || minChunk < 1 || chunkQuantum < 1) {
      throw new IllegalArgumentException("minElements, minChunk and chunkQuantum must be >= 1");
    }
    this.inner = inner;
    this.threads = threads;
    this.minElements = minElements;
    this.minChunk = minChunk;
    this.chunkQuantum = chunkQuantum;
    AtomicInteger n = new AtomicInteger();
    this.helpers =
        new ThreadPoolExecutor(
            threads - 1,
            threads - 1,
            30,
            TimeUnit.SECONDS,
            new LinkedBlockingQueue<>(),
            r -> {
              Thread t = new Thread(r, "pserver-kernels-" + n.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
    this.helpers.allowCoreThreadTimeOut(true);
  }

  /** The wrapped kernels. */
  public UpdateKernels inner() {
    return inner;
  }

  /** Threads per split update, the caller included. */
  public int threads() {
    return threads;
  }

  /** Calls with fewer elements run on the calling thread alone. */
  public int minElements() {
    return minElements;
  }

  /** Stops the helper threads; later split calls run on the calling thread alone. */
  public void shutdown() {
    helpers.shutdown();
  }

  @Override
  public String name() {
    return inner.name() + ", " + threads + " threads from " + minElements + " elements";
  }

  @Override
  public String toString() {
    return name();
  }

  // ---------------------------------------------------------------------------------------------

  /** One chunk of a split call. */
  @FunctionalInterface
  private interface Part {
    void run(int offset, int length);
  }

  /** A split call: chunks claimed from a counter by the caller and by helpers. */
  private static final class Job implements Runnable {
    final Part part;
    final int offset;
    final int end;
    final int chunk;
    final int chunks;
    final Thread owner = Thread.currentThread();
    final AtomicInteger next = new AtomicInteger();
    final AtomicInteger finished = new AtomicInteger();
    volatile Throwable failure;

    Job(Part part, int offset, int length, int chunk) {
      this.part = part;
      this.offset = offset;
      this.end = offset + length;
      this.chunk = chunk;
      this.chunks = (int) (((long) length + chunk - 1) / chunk);
    }

    @Override
    public void run() {
      int i;
      while ((i = next.getAndIncrement()) < chunks) {
        int from = offset + i * chunk;
        try {
          part.run(from, Math.min(chunk, end - from));
        } catch (Throwable t) {
          failure = t;
        }
        if (finished.incrementAndGet() == chunks) {
          LockSupport.unpark(owner);
        }
      }
    }

    /** Waits, uninterruptibly, until every chunk has finished: they write the caller's memory. */
    void await() {
      boolean interrupted = false;
      while (finished.get() < chunks) {
        LockSupport.park(this);
        if (Thread.interrupted()) {
          interrupted = true;
        }
      }
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
      Throwable t = failure;
      if (t instanceof RuntimeException r) {
        throw r;
      }
      if (t instanceof Error e) {
        throw e;
      }
      if (t != null) {
        throw new IllegalStateException(t);
      }
    }
  }

  /** Runs {@code part} over {@code [offset, offset+length)}, split when it is long enough. */
  private void run(int offset, int length, Part part) {
    if (length < minElements || length <= minChunk) {
      part.run(offset, length);
      return;
    }
    long perThread = ((long) length + threads - 1) / threads;
    long c = Math.max(minChunk, (perThread + 3) / 4); // about four chunks per thread
    int chunk = (int) Math.min(length, (c + chunkQuantum - 1) / chunkQuantum * chunkQuantum);
    Job job = new Job(part, offset, length, chunk);
    int wanted = Math.min(threads - 1, job.chunks - 1);
    for (int i = 0; i < wanted; i++) {
      try {
        helpers.execute(job);
      } catch (java.util.concurrent.RejectedExecutionException e) {
        break; // shut down: the caller does the rest
      }
    }
    job.run();
    job.await();
  }

  // ---------------------------------------------------------------------------------------------

  @Override
  public void sgd(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer momentumState,
      int offset,
      int length,
      double lr,
      double momentum,
      double decay,
      boolean nesterov,
      double gradScale,
      double gradClip) {
    KernelChecks.sgd(type, param, grad, momentumState, momentum, offset, length, gradScale, gradClip);
    run(offset, length, (o, n) ->
        inner.sgd(type, param, grad, momentumState, o, n, lr, momentum, decay, nesterov, gradScale, gradClip));
  }

  @Override
  public void adam(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer m,
      ByteBuffer v,
      int offset,
      int length,
      double lrT,
      double beta1,
      double beta2,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adam(type, param, grad, m, v, offset, length, gradScale, gradClip);
    run(offset, length, (o, n) ->
        inner.adam(type, param, grad, m, v, o, n, lrT, beta1, beta2, epsilon, decay, gradScale, gradClip));
  }

  @Override
  public void adagrad(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer accum,
      int offset,
      int length,
      double lr,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adagrad(type, param, grad, accum, offset, length, gradScale, gradClip);
    run(offset, length, (o, n) ->
        inner.adagrad(type, param, grad, accum, o, n, lr, epsilon, decay, gradScale, gradClip));
  }

  @Override
  public void adadelta(
      ElementType type,
      ByteBuffer param,
      ByteBuffer grad,
      ByteBuffer accumGrad,
      ByteBuffer accumDelta,
      ByteBuffer updateDelta,
      int offset,
      int length,
      double lr,
      double rho,
      double epsilon,
      double decay,
      double gradScale,
      double gradClip) {
    KernelChecks.adadelta(
        type, param, grad, accumGrad, accumDelta, updateDelta, offset, length, gradScale, gradClip);
    run(offset, length, (o, n) ->
        inner.adadelta(type, param, grad, accumGrad, accumDelta, updateDelta, o, n, lr, rho, epsilon,
            decay, gradScale, gradClip));
  }

  @Override
  public void accumulate(
      ElementType type, ByteBuffer param, ByteBuffer grad, int offset, int length, double alpha) {
    KernelChecks.accumulate(type, param, grad, offset, length);
    run(offset, length, (o, n) -> inner.accumulate(type, param, grad, o, n, alpha));
  }

  @Override
  public void assign(ElementType type, ByteBuffer dst, ByteBuffer src, int offset, int length) {
    KernelChecks.assign(type, dst, src, offset, length);
    run(offset, length, (o, n) -> inner.assign(type, dst, src, o, n));
  }

  /** Never split: a reduction in a fixed order, whose bits a split would change. */
  @Override
  public double sumOfSquares(
      ElementType type, ByteBuffer grad, int offset, int length, double gradClip, double scale) {
    return inner.sumOfSquares(type, grad, offset, length, gradClip, scale);
  }

  @Override
  public boolean allFinite(ElementType type, ByteBuffer grad, int offset, int length) {
    KernelChecks.gradient(type, grad, offset, length, 0);
    if (!type.isFloat()) {
      return true;
    }
    AtomicBoolean bad = new AtomicBoolean();
    run(offset, length, (o, n) -> {
      if (!bad.get() && !inner.allFinite(type, grad, o, n)) {
        bad.set(true);
      }
    });
    return !bad.get();
  }
}
