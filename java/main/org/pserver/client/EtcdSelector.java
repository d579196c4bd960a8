package org.pserver.client;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import org.pserver.cluster.EtcdInitSelector;
import org.pserver.cluster.EtcdSecurity;

/** {@link InitSelector} through etcd's {@code /init_ps/lock} and {@code /init_ps/done}. */
public final class EtcdSelector implements InitSelector {
  private final EtcdInitSelector selector;

  public EtcdSelector(String endpoints, Duration dialTimeout) {
    this(endpoints, dialTimeout, EtcdSecurity.NONE);
  }

  /**
   * With TLS and authentication to etcd (the settings the pservers get from {@code --etcd-cacert},
   * {@code --etcd-cert}, {@code --etcd-key}, {@code --etcd-user}, {@code --etcd-password}).
   *
   * @throws IllegalArgumentException if a certificate or key file cannot be read or used
   */
  public EtcdSelector(String endpoints, Duration dialTimeout, EtcdSecurity security) {
    this.selector = new EtcdInitSelector(endpoints, dialTimeout, security);
  }

  @Override
  public boolean select() throws Exception {
    return selector.select();
  }

  @Override
  public void done() throws Exception {
    selector.done();
  }

  @Override
  public boolean selectFor(BooleanSupplier stillNeeded) throws Exception {
    return selector.selectFor(stillNeeded);
  }

  @Override
  public void release() {
    selector.release();
  }

  @Override
  public void close() {
    selector.close();
  }
}
