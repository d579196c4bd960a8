package org.pserver.demo;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/** Shared, thread-safe training statistics: update count, bytes moved, the loss curve. */
public final class DemoStats {
  /** One point of the loss curve: after {@code updates} updates, the mean loss of recent batches. */
  public record Point(long updates, double seconds, double loss) {}

  private final long startNanos = System.nanoTime();
  private final AtomicLong updates = new AtomicLong();
  private final AtomicLong bytes = new AtomicLong();
  private final AtomicLong pull = new AtomicLong();
  private final AtomicLong compute = new AtomicLong();
  private final AtomicLong push = new AtomicLong();
  private final List<Point> curve = new ArrayList<>();
  private final List<String> failures = new ArrayList<>();
  private double window;
  private int windowCount;
  private final int every;

  /** Records a curve point every {@code every} updates (the mean loss of those updates). */
  public DemoStats(int every) {
    this.every = every;
  }

  void update(double loss, long moved, long pullNanos, long computeNanos, long pushNanos) {
    long n = updates.incrementAndGet();
    bytes.addAndGet(moved);
    pull.addAndGet(pullNanos);
    compute.addAndGet(computeNanos);
    push.addAndGet(pushNanos);
    synchronized (this) {
      window += loss;
      windowCount++;
      if (windowCount >= every) {
        curve.add(new Point(n, seconds(), window / windowCount));
        window = 0;
        windowCount = 0;
      }
    }
  }

  synchronized void fail(int trainer, Throwable t) {
    failures.add("trainer " + trainer + ": " + t);
  }

  public long updates() {
    return updates.get();
  }

  /** Where the trainers' time went: "pull 40%, compute 35%, push 25%". */
  public String timeSplit() {
    double p = pull.get(), c = compute.get(), u = push.get(), t = Math.max(1, p + c + u);
    return String.format(java.util.Locale.ROOT, "pull %.0f%%, compute %.0f%%, push %.0f%%", 100 * p / t, 100 * c / t, 100 * u / t);
  }

  public long bytes() {
    return bytes.get();
  }

  public double seconds() {
    return (System.nanoTime() - startNanos) / 1e9;
  }

  public synchronized List<Point> curve() {
    return new ArrayList<>(curve);
  }

  public synchronized List<String> failures() {
    return new ArrayList<>(failures);
  }

  /** True once the loss curve has a point. */
  public synchronized boolean hasLoss() {
    return !curve.isEmpty();
  }

  /** The latest curve point's loss, or NaN. */
  public synchronized double lastLoss() {
    return curve.isEmpty() ? Double.NaN : curve.get(curve.size() - 1).loss();
  }
}
