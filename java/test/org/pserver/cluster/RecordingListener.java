package org.pserver.cluster;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/** Records ownership events as strings ("lost 0", "regained 0", "taken 0 by host:port"). */
final class RecordingListener implements OwnershipListener {
  final List<String> events = new CopyOnWriteArrayList<>();
  final List<String> threads = new CopyOnWriteArrayList<>();
  volatile long lostAtNanos;

  @Override
  public void ownershipLost(int index, String reason) {
    lostAtNanos = System.nanoTime();
    threads.add(Thread.currentThread().getName());
    events.add("lost " + index);
  }

  @Override
  public void ownershipRegained(int index) {
    threads.add(Thread.currentThread().getName());
    events.add("regained " + index);
  }

  @Override
  public void indexTakenOver(int index, String holder) {
    threads.add(Thread.currentThread().getName());
    events.add("taken " + index + " by " + holder);
  }

  @Override
  public String toString() {
    return events.toString();
  }
}
