package org.pserver.store;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The parameters of one pserver, by name. Thread-safe; parameters are only ever added (the seed
 * has no delete), never replaced.
 */
public final class ParameterStore {
  private final ConcurrentHashMap<String, Slot> slots = new ConcurrentHashMap<>();

  /** The slot of {@code name}, or null. */
  public Slot get(String name) {
    return slots.get(name);
  }

  /** Adds {@code slot} unless its name exists; returns false (and changes nothing) if it does. */
  public boolean add(Slot slot) {
    return slots.putIfAbsent(slot.name(), slot) == null;
  }

  public int size() {
    return slots.size();
  }

  /** Every slot, sorted by name (checkpoints are written in this order). */
  public List<Slot> sorted() {
    List<Slot> l = new ArrayList<>(slots.values());
    l.sort(Comparator.comparing(Slot::name));
    return l;
  }

  public Collection<Slot> all() {
    return slots.values();
  }

  /** Total bytes of parameter content (not counting optimizer state). */
  public long contentBytes() {
    long n = 0;
    for (Slot s : slots.values()) {
      n += s.optimizer().byteLength();
    }
    return n;
  }
}
