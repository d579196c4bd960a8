package org.pserver.store;

import java.util.concurrent.locks.ReentrantLock;
import org.pserver.optimizer.ParameterOptimizer;

/**
 * One parameter held by a pserver: its optimizer (which owns the off-heap weights and state), the
 * record of pushes applied to it, and the lock that serializes everything touching them.
 *
 * <p>Updates to different parameters run in parallel; updates to one parameter never interleave.
 * Hold {@link #lock()} for every access to {@link #optimizer()} and {@link #applied()}.
 */
public final class Slot {
  private final String name;
  private final ParameterOptimizer optimizer;
  private final AppliedPushes applied;
  private final ReentrantLock lock = new ReentrantLock();

  public Slot(String name, ParameterOptimizer optimizer, AppliedPushes applied) {
    this.name = name;
    this.optimizer = optimizer;
    this.applied = applied;
  }

  public String name() {
    return name;
  }

  public ParameterOptimizer optimizer() {
    return optimizer;
  }

  public AppliedPushes applied() {
    return applied;
  }

  public ReentrantLock lock() {
    return lock;
  }
}
