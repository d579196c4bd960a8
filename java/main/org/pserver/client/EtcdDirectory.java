package org.pserver.client;

import java.time.Duration;
import java.util.concurrent.TimeoutException;
import java.util.function.IntConsumer;
import org.pserver.cluster.EtcdLister;
import org.pserver.cluster.EtcdSecurity;

/**
 * The pservers as etcd lists them: the count from {@code /ps_desired}, the addresses from {@code
 * /ps/<i>}, followed by a watch (a pserver that restarts elsewhere is picked up within moments,
 * not on the seed's 10 s poll). Closing it closes the lister.
 */
public final class EtcdDirectory implements PServerDirectory {
  private final EtcdLister lister;
  private final int size;

  private EtcdDirectory(EtcdLister lister, int size) {
    this.lister = lister;
    this.size = size;
  }

  /**
   * Connects and waits (up to {@code wait}) until {@code /ps_desired} exists.
   *
   * @throws TimeoutException if it does not appear in time
   */
  public static EtcdDirectory connect(String endpoints, Duration dialTimeout, Duration wait)
      throws TimeoutException, InterruptedException {
    return connect(endpoints, dialTimeout, wait, EtcdSecurity.NONE);
  }

  /**
   * As {@link #connect(String, Duration, Duration)}, with TLS and authentication to etcd (the
   * settings the pservers get from {@code --etcd-cacert}, {@code --etcd-cert}, {@code --etcd-key},
   * {@code --etcd-user}, {@code --etcd-password}). Trap: wrong settings show up as a {@link
   * TimeoutException} here (the lister logs each refused attempt), not as an immediate error.
   *
   * @throws IllegalArgumentException if a certificate or key file cannot be read or used
   */
  public static EtcdDirectory connect(String endpoints, Duration dialTimeout, Duration wait, EtcdSecurity security)
      throws TimeoutException, InterruptedException {
    EtcdLister l = new EtcdLister(endpoints, dialTimeout, security).start();
    try {
      return new EtcdDirectory(l, l.awaitDesired(wait));
    } catch (TimeoutException | InterruptedException | RuntimeException e) {
      l.close();
      throw e;
    }
  }

  /** Waits until every pserver has an address (a trainer's usual first step). */
  public void awaitAll(Duration wait) throws TimeoutException, InterruptedException {
    lister.awaitAll(wait);
  }

  @Override
  public int size() {
    return size;
  }

  @Override
  public String address(int index) {
    return lister.snapshot().get(index);
  }

  @Override
  public void onChange(IntConsumer changed) {
    lister.addListener(c -> changed.accept(c.index()));
  }

  @Override
  public void close() {
    lister.close();
  }

  @Override
  public String toString() {
    return "pservers in etcd " + lister.snapshot();
  }
}
