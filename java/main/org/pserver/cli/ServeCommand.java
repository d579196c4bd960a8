package org.pserver.cli;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.util.concurrent.CountDownLatch;
import java.util.function.Consumer;
import org.pserver.checkpoint.CheckpointException;
import org.pserver.cluster.EtcdSecurity;
import org.pserver.metrics.Metrics;
import org.pserver.node.PServerNode;
import org.pserver.rpc.PServerServer;
import org.pserver.service.PServerException;
import org.pserver.service.Service;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code pserver serve}: runs one pserver until SIGTERM or SIGINT, then stops taking writes,
 * finishes the calls in flight, takes a final checkpoint and exits 0.
 *
 * <p>Exit codes: 0 after an orderly stop (also when the signal came during start-up, before
 * serving: start-up is interrupted, nothing was acknowledged); 1 another start-up failure; 2 a bad
 * flag or no loadable checkpoint; 3 the index was taken over in etcd mode; 4 the final checkpoint
 * failed, so updates acknowledged since the last checkpoint are lost. The signal handlers are
 * installed before start-up, so no signal is ever handled by the JVM's default (exit 143 with no
 * final checkpoint).
 *
 * <p>The seed's flags, as long options; each can also come from {@code PSERVER_<NAME>} (e.g.
 * {@code PSERVER_CHECKPOINT_INTERVAL=10m}); the command line wins.
 */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = "Runs a pserver: standalone without --etcd-endpoint, else registered in etcd.")
final class ServeCommand implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(ServeCommand.class);
  static final int EXIT_NO_CHECKPOINT = 2;
  static final int EXIT_TAKEN_OVER = 3;
  static final int EXIT_FINAL_CHECKPOINT_FAILED = 4;

  @Spec CommandSpec spec;

  @Option(names = "--port", defaultValue = "${env:PSERVER_PORT:-8001}", description = "gRPC port (default ${DEFAULT-VALUE}; 0 = any free port).")
  int port;

  @Option(names = "--index", defaultValue = "${env:PSERVER_INDEX}", description = "pserver index. Standalone: default 0. With etcd: a given index is waited for as long as it is held; -1 (the default) prefers the indices the checkpoint path served, then the lowest free one.")
  Integer index;

  @Option(names = "--etcd-endpoint", defaultValue = "${env:PSERVER_ETCD_ENDPOINT}", description = "comma-separated etcd endpoints; empty = standalone (default).")
  String etcdEndpoint;

  @Option(names = "--dial-timeout", defaultValue = "${env:PSERVER_DIAL_TIMEOUT:-5s}", converter = GoDuration.class, description = "etcd dial timeout (default ${DEFAULT-VALUE}).")
  Duration dialTimeout;

  @Option(names = "--etcd-ttl", defaultValue = "${env:PSERVER_ETCD_TTL:-5}", description = "etcd lease TTL in seconds (default ${DEFAULT-VALUE}).")
  int etcdTtl;

  @Option(names = "--num-pservers", defaultValue = "${env:PSERVER_NUM_PSERVERS:-1}", description = "desired pserver count, written to /ps_desired if absent (default ${DEFAULT-VALUE}).")
  int numPservers;

  @Option(names = "--checkpoint-path", defaultValue = "${env:PSERVER_CHECKPOINT_PATH:-checkpoints}", description = "checkpoint directory (default ${DEFAULT-VALUE}).")
  Path checkpointPath;

  @Option(names = "--checkpoint-interval", defaultValue = "${env:PSERVER_CHECKPOINT_INTERVAL:-600s}", converter = GoDuration.class, description = "checkpoint period; 0 = only on demand and at shutdown (default ${DEFAULT-VALUE}).")
  Duration checkpointInterval;

  @Option(names = "--log-level", defaultValue = "${env:PSERVER_LOG_LEVEL:-info}", converter = Logging.Level.class, description = "debug, info, warn, error or crit (default ${DEFAULT-VALUE}).")
  String logLevel;

  @Option(names = "--max-message-bytes", defaultValue = "${env:PSERVER_MAX_MESSAGE_BYTES:-536870912}", description = "largest gRPC message accepted (default ${DEFAULT-VALUE}); larger ones get RESOURCE_EXHAUSTED.")
  int maxMessageBytes;

  @Option(names = "--allow-non-finite", defaultValue = "${env:PSERVER_ALLOW_NON_FINITE:-false}", description = "apply gradients containing NaN or Inf (default: reject them).")
  boolean allowNonFinite;

  @Option(names = "--dedup-ttl", defaultValue = "${env:PSERVER_DEDUP_TTL:-1h}", converter = GoDuration.class, description = "forget a trainer's applied pushes after this long without a push (default ${DEFAULT-VALUE}).")
  Duration dedupTtl;

  @Mixin MonitoringOptions monitoring;

  @Mixin TlsOptions tls;

  /** TLS and credentials for etcd; the etcd wiring passes {@code toEtcdSecurity()} to jetcd. */
  @Mixin EtcdSecurityOptions etcdSecurity;

  @Option(names = "--shutdown-grace", defaultValue = "${env:PSERVER_SHUTDOWN_GRACE:-30s}", converter = GoDuration.class, description = "how long calls in flight may take to finish at shutdown (default ${DEFAULT-VALUE}).")
  Duration shutdownGrace;

  @Option(names = "--advertise-host", defaultValue = "${env:PSERVER_ADVERTISE_HOST}", description = "host published in /ps/<index> (default: the first non-loopback IPv4 address, as the seed).")
  String advertiseHost;

  @Override
  public Integer call() throws Exception {
    Logging.setLevel(logLevel);
    if (maxMessageBytes <= 0) {
      throw new ParameterException(spec.commandLine(), "--max-message-bytes must be > 0");
    }
    boolean standalone = etcdEndpoint == null || etcdEndpoint.isBlank();
    int idx = index == null ? (standalone ? 0 : -1) : index;
    if (standalone && idx < 0) {
      throw new ParameterException(spec.commandLine(), "--index must be >= 0 without --etcd-endpoint (got " + idx + ")");
    }
    if (!standalone && numPservers < 1) {
      throw new ParameterException(spec.commandLine(), "--num-pservers must be >= 1");
    }
    PServerNode.Config config = new PServerNode.Config(port, idx, standalone ? null : etcdEndpoint, dialTimeout, etcdTtl,
        numPservers, advertiseHost, checkpointPath, checkpointInterval, maxMessageBytes, allowNonFinite, dedupTtl);
    Operations ops = Operations.open(spec, monitoring, tls);
    EtcdSecurity etcd = etcdSecurity.toEtcdSecurity();
    CountDownLatch stop = new CountDownLatch(1);
    StartUp startUp = new StartUp();
    Signals.onTermination(() -> {
      stop.countDown();
      startUp.signalled();
    });
    PServerNode node;
    try {
      node = PServerNode.start(config, new PServerNode.Hooks() {
        @Override
        public Metrics metrics() {
          return ops.metrics();
        }

        @Override
        public Consumer<NettyServerBuilder> serverCustomizer(Service service) {
          startUp.serving(); // the server is built and started next
          return ops.attach(service);
        }

        @Override
        public EtcdSecurity etcdSecurity() {
          return etcd;
        }

        @Override
        public void started(PServerServer server) throws IOException {
          ops.started(server);
        }
      });
    } catch (Exception e) {
      if (stop.getCount() == 0) {
        LOG.info("signal received during start-up: stopped before serving ({})", e.toString());
        ops.close();
        return 0;
      }
      if (e instanceof CheckpointException) {
        LOG.error("pserver {}: refusing to start: {}", idx, e.getMessage());
        ops.close();
        return EXIT_NO_CHECKPOINT;
      }
      throw e;
    }
    startUp.serving();
    LOG.info("{}; checkpoint interval {}", node.describe(), GoDuration.format(checkpointInterval));
    node.fatal().thenRun(stop::countDown);
    stop.await();
    if (node.fatal().isDone()) {
      LOG.error("pserver {} exits: {}", node.index(), node.fatal().join());
      ops.close();
      return EXIT_TAKEN_OVER;
    }
    LOG.info("signal received: draining calls in flight, then a final checkpoint");
    try {
      node.shutdown(shutdownGrace);
    } catch (PServerException e) {
      LOG.error("pserver {}: stopped WITHOUT A FINAL CHECKPOINT, exit code {}: {}", node.index(), EXIT_FINAL_CHECKPOINT_FAILED, e.getMessage());
      ops.close();
      return EXIT_FINAL_CHECKPOINT_FAILED;
    }
    ops.close();
    LOG.info("stopped");
    return 0;
  }

  /**
   * A signal during start-up interrupts the main thread (e.g. a wait for a free index in etcd)
   * while nothing can have been acknowledged yet; from the moment the server is about to start, a
   * signal only releases the main thread's wait, and the node then stops in order.
   */
  private static final class StartUp {
    private final Thread main = Thread.currentThread();
    private boolean starting = true;

    synchronized void signalled() {
      if (starting) {
        main.interrupt();
      }
    }

    /** On the main thread: no more interrupts, and none left pending. */
    synchronized void serving() {
      starting = false;
      Thread.interrupted();
    }
  }
}
