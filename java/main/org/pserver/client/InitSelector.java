package org.pserver.client;

import java.util.function.BooleanSupplier;

/**
 * Decides which trainer initializes the parameters: the seed's {@code Selector}. With etcd, the
 * {@code /init_ps/lock} mutex and {@code /init_ps/done} flag (see {@code EtcdSelector}); without
 * it, a fixed choice made when the trainers are started.
 */
public interface InitSelector extends AutoCloseable {
  /**
   * True if this trainer must initialize the parameters (and then call {@link #done()}); false if
   * another trainer has done or is doing it.
   */
  boolean select() throws Exception;

  /** Marks initialization finished (after {@link #select()} returned true). */
  void done() throws Exception;

  /**
   * For a pserver that came back empty: true (holding the selection until {@link #release()}) if
   * this trainer should re-initialize it, which is the case when {@code stillNeeded} is still true
   * once this trainer holds the selection; false otherwise.
   */
  boolean selectFor(BooleanSupplier stillNeeded) throws Exception;

  /** Gives up the selection without marking anything done. */
  void release();

  @Override
  default void close() {}

  /** A fixed choice: the trainer created with {@code selected = true} initializes. */
  static InitSelector fixed(boolean selected) {
    return new InitSelector() {
      private final Object lock = new Object();
      private boolean holding;

      @Override
      public boolean select() {
        return selected;
      }

      @Override
      public void done() {}

      @Override
      public boolean selectFor(BooleanSupplier stillNeeded) throws InterruptedException {
        if (!selected) {
          return false;
        }
        synchronized (lock) {
          while (holding) {
            lock.wait();
          }
          if (!stillNeeded.getAsBoolean()) {
            return false;
          }
          holding = true;
          return true;
        }
      }

      @Override
      public void release() {
        synchronized (lock) {
          holding = false;
          lock.notifyAll();
        }
      }

      @Override
      public String toString() {
        return selected ? "selected (fixed)" : "not selected (fixed)";
      }
    };
  }
}
