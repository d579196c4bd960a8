package org.pserver.cluster;

/**
 * Hears what happens to an {@link EtcdClient}'s claim on its pserver index after {@code
 * register()} returned.
 *
 * <p>Callbacks run one at a time, in order, on the client's own event thread, never on a jetcd or
 * gRPC thread and never while the client holds a lock; they may call back into the client. A slow
 * callback delays later callbacks, not the client's keep-alives. Exceptions thrown by a callback
 * are logged and dropped. Every method has an empty default.
 *
 * <p>Typical daemon reaction: on {@link #ownershipLost} stop acknowledging writes (the client
 * already refuses fenced puts), on {@link #ownershipRegained} resume, on {@link #indexTakenOver}
 * exit, because another process now serves this index.
 */
public interface OwnershipListener {
  /**
   * Ownership can no longer be proven. Called after {@link EtcdClient#isOwner()} has turned false
   * and before the lease could have expired on the server (when the cause is a missing keep-alive).
   * The client keeps trying to re-register the same index in the background.
   *
   * @param index the index this pserver held
   * @param reason a human-readable cause, for logs
   */
  default void ownershipLost(int index, String reason) {}

  /** The client proved ownership of the same {@code index} again; fenced puts work again. */
  default void ownershipRegained(int index) {}

  /**
   * While this pserver was not the owner, another one claimed {@code index}. Terminal: the client
   * revokes its lease, does not claim any other index, and stays not-owner until closed.
   *
   * @param holder the value of {@code /ps/<index>} now (the other pserver's {@code host:port})
   */
  default void indexTakenOver(int index, String holder) {}
}
