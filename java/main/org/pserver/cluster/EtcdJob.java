package org.pserver.cluster;

import io.etcd.jetcd.Client;
import io.etcd.jetcd.KV;
import io.etcd.jetcd.options.DeleteOption;
import java.io.IOException;
import java.time.Duration;

/**
 * Job-wide state in etcd, for tools that own a whole job (the demo starting its own pservers).
 *
 * <p>Trap: {@link #reset} is for a job nobody else is running on the same etcd. Deleting {@code
 * /checkpoints/<i>} under a live pserver makes it treat its index as taken over when it next
 * re-registers, and deleting {@code /init_ps/done} lets the next trainer initialize again.
 */
public final class EtcdJob {
  private EtcdJob() {}

  /**
   * Deletes what an earlier job left: {@link EtcdKeys#PS_DESIRED} (its pserver count), every
   * {@code /checkpoints/<i>} (metadata of checkpoint files a fresh job will not have; recovery
   * refuses to start from metadata whose file is missing) and {@link EtcdKeys#INIT_DONE} (which
   * would tell the trainers fresh pservers are initialized). Registrations and lock keys live on
   * leases and expire by themselves.
   *
   * @param endpoints comma-separated, as for every etcd client of this package
   * @param timeout for each of the three deletes
   * @throws IOException if etcd did not answer in time or refused
   */
  public static void reset(String endpoints, Duration timeout, EtcdSecurity security) throws IOException {
    try (Client etcd = Etcd.connect(endpoints, timeout, timeout, security)) {
      KV kv = etcd.getKVClient();
      Etcd.awaitIo(kv.delete(Etcd.bytes(EtcdKeys.PS_DESIRED)), timeout, "delete " + EtcdKeys.PS_DESIRED, endpoints);
      Etcd.awaitIo(kv.delete(Etcd.bytes(EtcdKeys.CHECKPOINT_PREFIX), DeleteOption.builder().isPrefix(true).build()),
          timeout, "delete " + EtcdKeys.CHECKPOINT_PREFIX + "*", endpoints);
      Etcd.awaitIo(kv.delete(Etcd.bytes(EtcdKeys.INIT_DONE)), timeout, "delete " + EtcdKeys.INIT_DONE, endpoints);
    }
  }
}
