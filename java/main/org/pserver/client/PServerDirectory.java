package org.pserver.client;

import java.util.List;
import java.util.function.IntConsumer;

/**
 * Where the pservers are: their count and the current address of each index. A static list, or
 * etcd's {@code /ps/<i>} keys followed by a watch (see {@code EtcdDirectory}).
 *
 * <p>Implementations are thread-safe. An address may be unknown (null) for a while, e.g. while a
 * pserver restarts; the client then waits and retries.
 */
public interface PServerDirectory extends AutoCloseable {
  /** How many pservers the job has (the seed's desired count); fixed for the client's life. */
  int size();

  /** The current {@code host:port} of pserver {@code index}, or null if unknown right now. */
  String address(int index);

  /** Calls {@code changed} with the index whenever that pserver's address changes. */
  default void onChange(IntConsumer changed) {}

  @Override
  default void close() {}

  /** A fixed list: pserver i is at {@code addresses.get(i)}. */
  static PServerDirectory of(List<String> addresses) {
    List<String> copy = List.copyOf(addresses);
    if (copy.isEmpty()) {
      throw new IllegalArgumentException("no pserver addresses");
    }
    return new PServerDirectory() {
      @Override
      public int size() {
        return copy.size();
      }

      @Override
      public String address(int index) {
        return copy.get(index);
      }

      @Override
      public String toString() {
        return "pservers " + copy;
      }
    };
  }
}
