package org.pserver.node;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.checkpoint.CheckpointMeta;
import io.grpc.netty.NettyServerBuilder;
import java.util.function.Consumer;
import org.pserver.cluster.EtcdClient;
import org.pserver.cluster.EtcdSecurity;
import org.pserver.cluster.KVStore;
import org.pserver.cluster.LocalKVStore;
import org.pserver.cluster.OwnershipListener;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;
import org.pserver.metrics.Metrics;
import org.pserver.rpc.PServerServer;
import org.pserver.service.Service;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One running pserver, assembled from its settings: the daemon behind {@code pserver serve}, and
 * the in-process pservers of {@code pserver demo}.
 *
 * <ul>
 *   <li><b>Standalone</b> (no etcd endpoints): index from the settings (default 0), checkpoint
 *       metadata in a file next to the checkpoints, writes always allowed.
 *   <li><b>etcd</b>: registers (claiming {@code /ps/<i>} on a lease), keeps its checkpoint
 *       metadata in etcd with fenced puts, refuses writes while it cannot prove it owns its index,
 *       and revokes its lease on shutdown. If another process takes its index over, the node stops
 *       serving at once and {@link #fatal()} completes. Which index:
 *       <ul>
 *         <li>an explicit index ({@code --index} >= 0) is waited for as long as it is held, and
 *             registration fails if it is not below {@code /ps_desired};
 *         <li>otherwise the indices this checkpoint directory served (recorded in its {@value
 *             #INDEX_FILE} file, one per line, most recent first) are preferred: the first free
 *             one is taken; while all are held they are waited for only about the TTL + 2 s
 *             ({@link EtcdClient#rememberedIndexWait}: a crashed predecessor's lease expiring), then
 *             the lowest free index is taken. Recorded indices not below {@code /ps_desired} are
 *             ignored with a warning. Pservers sharing a checkpoint directory therefore never
 *             block each other; each loads the checkpoint of the index it got.
 *       </ul>
 * </ul>
 *
 * Start-up order: (register) → recover the checkpoint of the index → serve. Shutdown: drain, final
 * checkpoint, (revoke the lease).
 */
public final class PServerNode implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(PServerNode.class);
  /**
   * Records, in the checkpoint directory, which indices this directory's checkpoints belong to: one
   * decimal index per line, the most recently registered first.
   */
  static final String INDEX_FILE = "pserver-index";
  /** At most this many indices are recorded (a directory rarely serves more than one or two). */
  private static final int MAX_REMEMBERED = 64;

  /** A node's settings; the CLI flags map one to one. */
  public record Config(
      int port,
      int index,
      String etcdEndpoints,
      Duration dialTimeout,
      int etcdTtlSeconds,
      int numPservers,
      String advertiseHost,
      Path checkpointPath,
      Duration checkpointInterval,
      int maxMessageBytes,
      boolean allowNonFinite,
      Duration dedupTtl) {
    public Config {
      Objects.requireNonNull(checkpointPath, "checkpointPath");
      Objects.requireNonNull(checkpointInterval, "checkpointInterval");
      Objects.requireNonNull(dialTimeout, "dialTimeout");
      Objects.requireNonNull(dedupTtl, "dedupTtl");
    }

    public boolean standalone() {
      return etcdEndpoints == null || etcdEndpoints.isBlank();
    }

    /** Standalone defaults for pserver {@code index} with checkpoints in {@code dir}. */
    public static Config standalone(int index, Path dir) {
      return new Config(0, index, null, Duration.ofSeconds(5), 5, 1, null, dir, Duration.ofMinutes(10),
          PServerServer.DEFAULT_MAX_MESSAGE_BYTES, false, Duration.ofHours(1));
    }

    public Config withEtcd(String endpoints, int numPservers, int ttlSeconds) {
      return new Config(port, index, endpoints, dialTimeout, ttlSeconds, numPservers, advertiseHost, checkpointPath,
          checkpointInterval, maxMessageBytes, allowNonFinite, dedupTtl);
    }

    public Config withCheckpointInterval(Duration d) {
      return new Config(port, index, etcdEndpoints, dialTimeout, etcdTtlSeconds, numPservers, advertiseHost, checkpointPath,
          d, maxMessageBytes, allowNonFinite, dedupTtl);
    }

    public Config withAdvertiseHost(String host) {
      return new Config(port, index, etcdEndpoints, dialTimeout, etcdTtlSeconds, numPservers, host, checkpointPath,
          checkpointInterval, maxMessageBytes, allowNonFinite, dedupTtl);
    }
  }

  /**
   * What the daemon adds around a node: metrics, TLS and interceptors on the gRPC server, an etcd
   * connection's security, and a callback once serving. Every method has a do-nothing default.
   */
  public interface Hooks {
    default Metrics metrics() {
      return Metrics.NONE;
    }

    /** How to customize the server builder of {@code service} (TLS, token check, interceptors). */
    default Consumer<NettyServerBuilder> serverCustomizer(Service service) {
      return b -> {};
    }

    default EtcdSecurity etcdSecurity() {
      return EtcdSecurity.NONE;
    }

    /** Called once the server is serving. */
    default void started(PServerServer server) throws IOException {}

    Hooks NONE = new Hooks() {};
  }

  private final Config config;
  private final int index;
  private final EtcdClient etcd;
  private final Service service;
  private final PServerServer server;
  private final Checkpoint recovered;
  private final CompletableFuture<String> fatal = new CompletableFuture<>();
  private final Metrics metrics;

  private PServerNode(Config config, int index, EtcdClient etcd, Service service, PServerServer server, Checkpoint recovered, Metrics metrics) {
    this.metrics = metrics;
    this.config = config;
    this.index = index;
    this.etcd = etcd;
    this.service = service;
    this.server = server;
    this.recovered = recovered;
  }

  /**
   * Starts a node: registers (etcd mode; this waits while every slot is taken), recovers the
   * checkpoint of its index and starts serving.
   *
   * @throws org.pserver.checkpoint.CheckpointException when a checkpoint exists but none is usable:
   *     the node must not start empty over it
   */
  public static PServerNode start(Config c) throws Exception {
    return start(c, Hooks.NONE);
  }

  /** As {@link #start(Config)}, with the daemon's {@link Hooks}. */
  public static PServerNode start(Config c, Hooks hooks) throws Exception {
    UpdateKernels kernels = Kernels.get();
    Metrics metrics = hooks.metrics();
    int port = c.port();
    EtcdClient etcd = null;
    int index;
    KVStore kv;
    Service.WriteGate gate;
    if (c.standalone()) {
      index = c.index() < 0 ? 0 : c.index();
      kv = new LocalKVStore(c.checkpointPath());
      gate = Service.WriteGate.OPEN;
      metrics.registration(Metrics.LeaseState.STANDALONE, index);
    } else {
      if (port == 0) {
        port = freePort(); // the address is published before the server starts
      }
      EtcdClient.Builder b = EtcdClient.builder(c.etcdEndpoints())
          .desiredPservers(c.numPservers())
          .dialTimeout(c.dialTimeout())
          .ttlSeconds(c.etcdTtlSeconds())
          .security(hooks.etcdSecurity());
      if (c.advertiseHost() != null && !c.advertiseHost().isBlank()) {
        b.advertiseHost(c.advertiseHost());
      }
      etcd = b.build();
      metrics.registration(Metrics.LeaseState.REGISTERING, -1);
      try {
        if (c.index() >= 0) {
          index = etcd.register(port, c.index());
        } else {
          List<Integer> remembered = rememberedIndices(c.checkpointPath());
          if (!remembered.isEmpty()) {
            LOG.info("{} records indices {}: preferring them", c.checkpointPath().resolve(INDEX_FILE), remembered);
          }
          index = etcd.registerRemembered(
              port, remembered, EtcdClient.rememberedIndexWait(c.etcdTtlSeconds()), null);
        }
      } catch (Exception e) {
        etcd.close();
        throw e;
      }
      remember(c.checkpointPath(), index, etcd.desired().orElse(Integer.MAX_VALUE));
      metrics.registration(Metrics.LeaseState.HELD, index);
      kv = etcd;
      EtcdClient client = etcd;
      gate = () -> client.isOwner() ? null : "its etcd registration is lost (" + client.state() + ")";
    }
    try {
      CheckpointManager checkpoints = new CheckpointManager(c.checkpointPath(), index, kv, kernels, Duration.ofSeconds(3));
      checkpoints.setMetrics(metrics);
      Checkpoint restored = checkpoints.recover().orElse(null);
      Service service = new Service(
          new Service.Options(index, kernels, c.checkpointInterval(), c.allowNonFinite(), c.dedupTtl()), checkpoints, restored, gate);
      PServerServer server = PServerServer.netty(service, port, c.maxMessageBytes(), hooks.serverCustomizer(service)).start();
      PServerNode node = new PServerNode(c, index, etcd, service, server, restored, metrics);
      if (etcd != null) {
        etcd.addListener(node.ownershipListener());
      }
      hooks.started(server);
      return node;
    } catch (Exception e) {
      if (etcd != null) {
        etcd.close();
      }
      throw e;
    }
  }

  private OwnershipListener ownershipListener() {
    return new OwnershipListener() {
      @Override
      public void ownershipLost(int i, String reason) {
        LOG.warn("pserver {}: etcd ownership lost ({}): refusing writes until it is regained", i, reason);
        metrics.registration(Metrics.LeaseState.LOST, i);
      }

      @Override
      public void ownershipRegained(int i) {
        LOG.info("pserver {}: etcd ownership regained: accepting writes again", i);
        metrics.registration(Metrics.LeaseState.HELD, i);
      }

      @Override
      public void indexTakenOver(int i, String holder) {
        String why = "pserver index " + i + " was taken over by " + holder + " while this process was cut off";
        LOG.error("{}: stopping at once", why);
        metrics.registration(Metrics.LeaseState.RELEASED, -1);
        server.abort();
        fatal.complete(why);
      }
    };
  }

  public int index() {
    return index;
  }

  public int port() {
    return server.port();
  }

  public Service service() {
    return service;
  }

  /** The checkpoint this node started from, or null for a fresh start. */
  public Checkpoint recovered() {
    return recovered;
  }

  /** Completes, with the reason, if the node had to stop because its index was taken over. */
  public CompletableFuture<String> fatal() {
    return fatal;
  }

  /** The start-up line: address, index, mode, kernels, recovered checkpoint. */
  public String describe() {
    String mode = etcd == null ? "standalone" : "registered in etcd " + config.etcdEndpoints() + " as " + etcd.address();
    String cp = recovered == null
        ? "no checkpoint recovered (fresh start)"
        : "recovered checkpoint " + recovered.meta().uuid() + " with " + recovered.entries().size() + " parameters";
    return "pserver " + index + " listening on :" + port() + " (" + mode + "), kernels " + Kernels.description()
        + ", checkpoints in " + config.checkpointPath().toAbsolutePath().normalize() + ", " + cp;
  }

  /**
   * Graceful stop: drain, final checkpoint, then revoke the etcd lease.
   *
   * @return the final checkpoint, or null if none was due
   * @throws org.pserver.service.PServerException if the final checkpoint failed: acknowledged
   *     updates since the last checkpoint are not on disk. The node has stopped (and released its
   *     lease) all the same
   */
  public CheckpointMeta shutdown(Duration grace) {
    try {
      return server.shutdown(grace);
    } finally {
      if (etcd != null) {
        etcd.close();
        metrics.registration(Metrics.LeaseState.RELEASED, -1);
      }
    }
  }

  /** Stops at once, like a crash, but revokes the lease (for tests). */
  public void abort() {
    server.abort();
    if (etcd != null) {
      etcd.close();
    }
  }

  @Override
  public void close() {
    shutdown(Duration.ofSeconds(30));
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /**
   * The indices recorded in {@code dir}'s {@value #INDEX_FILE}, in order (empty if there is none).
   * Lines that are not a non-negative decimal index are skipped with a warning.
   */
  static List<Integer> rememberedIndices(Path dir) {
    Path f = dir.resolve(INDEX_FILE);
    List<String> lines;
    try {
      lines = Files.readAllLines(f, StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      return List.of();
    } catch (IOException e) {
      LOG.warn("cannot read {}: {}; not preferring any index", f, e.toString());
      return List.of();
    }
    List<Integer> out = new ArrayList<>();
    for (String line : lines) {
      String t = line.strip();
      if (t.isEmpty()) {
        continue;
      }
      try {
        int i = Integer.parseInt(t);
        if (i < 0) {
          throw new NumberFormatException("negative");
        }
        if (!out.contains(i)) {
          out.add(i);
        }
      } catch (NumberFormatException e) {
        LOG.warn("{} has a line that is not an index: '{}'; skipping it", f, t);
      }
    }
    return out;
  }

  /**
   * Records {@code index} first in {@code dir}'s {@value #INDEX_FILE}, keeping the other recorded
   * indices below {@code desired} after it.
   */
  static void remember(Path dir, int index, int desired) {
    List<Integer> all = new ArrayList<>();
    all.add(index);
    for (int i : rememberedIndices(dir)) {
      if (i != index && i < desired && all.size() < MAX_REMEMBERED) {
        all.add(i);
      }
    }
    StringBuilder b = new StringBuilder();
    all.forEach(i -> b.append(i).append('\n'));
    try {
      Files.createDirectories(dir);
      Path tmp = Files.createTempFile(dir, INDEX_FILE, ".tmp");
      try {
        Files.writeString(tmp, b, StandardCharsets.UTF_8);
        Files.move(tmp, dir.resolve(INDEX_FILE), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } finally {
        Files.deleteIfExists(tmp);
      }
    } catch (IOException e) {
      LOG.warn("cannot record the index in {}: {}", dir, e.toString());
    }
  }
}
