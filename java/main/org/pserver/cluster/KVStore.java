package org.pserver.cluster;

import java.io.IOException;
import java.time.Duration;

/**
 * A small key-value store for coordination metadata: the seed's {@code KVStore}. pserver keeps its
 * checkpoint metadata here under {@code /checkpoints/<index>}.
 *
 * <p>Implementations: a local file store for standalone pservers, and the etcd client for
 * clusters. Keys are absolute, slash-separated paths such as {@code /checkpoints/0}.
 *
 * <p>Contract and traps:
 *
 * <ul>
 *   <li>{@link #get} returns an <em>empty array</em> when the key is absent, as the seed's {@code
 *       GetKey} does; an empty value and a missing key are therefore the same thing.
 *   <li>Each call finishes within its timeout or throws {@link IOException} (or a subclass such as
 *       a fencing error); an exception means the put may or may not have happened.
 *   <li>A store that fences (etcd) refuses writes once it can no longer prove it owns its pserver
 *       index, so a deposed pserver never overwrites its successor's metadata.
 *   <li>Implementations are thread-safe.
 * </ul>
 */
public interface KVStore {
  /** The value of {@code key}, or an empty array if there is none. */
  byte[] get(String key, Duration timeout) throws IOException;

  /**
   * Sets {@code key} to {@code value}. With {@code withLease} the key lives only as long as this
   * process's registration lease (stores without leases reject {@code true}).
   */
  void put(String key, byte[] value, Duration timeout, boolean withLease) throws IOException;
}
