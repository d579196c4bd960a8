package org.pserver.cluster;

import java.io.IOException;

/**
 * A fenced write was refused because this pserver cannot prove that it still owns its index.
 *
 * <p>Unlike other {@link IOException}s from a {@link KVStore}, this one is definite: nothing was
 * written (either etcd was not called at all, or the guarding transaction's comparison failed and
 * its write branch did not run). Retrying does not help until ownership is regained; see {@link
 * OwnershipListener}.
 */
public class NotOwnerException extends IOException {
  private static final long serialVersionUID = 1L;

  /** @param message what was refused and why */
  public NotOwnerException(String message) {
    super(message);
  }
}
