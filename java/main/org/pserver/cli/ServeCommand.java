package org.pserver.cli;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;
import org.pserver.metrics.Metrics;
import org.pserver.rpc.PServerServer;
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

  @Spec CommandSpec spec;

  @Option(names = "--port", defaultValue = "${env:PSERVER_PORT:-8001}", description = "gRPC port (default ${DEFAULT-VALUE}; 0 = any free port).")
  int port;

  @Option(names = "--index", defaultValue = "${env:PSERVER_INDEX}", description = "pserver index; -1 = claim one in etcd. Default: 0 standalone, -1 with etcd.")
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

  @Override
  public Integer call() throws Exception {
    Logging.setLevel(logLevel);
    if (maxMessageBytes <= 0) {
      throw new ParameterException(spec.commandLine(), "--max-message-bytes must be > 0");
    }
    if (etcdEndpoint != null && !etcdEndpoint.isBlank()) {
      throw new ParameterException(spec.commandLine(), "--etcd-endpoint: etcd mode is not available in this build yet");
    }
    int idx = index == null ? 0 : index;
    if (idx < 0) {
      throw new ParameterException(spec.commandLine(), "--index must be >= 0 without --etcd-endpoint (got " + idx + ")");
    }
    Operations ops = Operations.open(spec, monitoring, tls);
    ops.metrics().registration(Metrics.LeaseState.STANDALONE, idx);
    UpdateKernels kernels = Kernels.get();
    LocalKVStore kv = new LocalKVStore(checkpointPath);
    CheckpointManager checkpoints = new CheckpointManager(checkpointPath, idx, kv, kernels, Duration.ofSeconds(3));
    checkpoints.setMetrics(ops.metrics());
    Checkpoint restored;
    try {
      restored = checkpoints.recover().orElse(null);
    } catch (Exception e) {
      LOG.error("pserver {}: refusing to start: {}", idx, e.getMessage());
      ops.close();
      return 2;
    }
    Service service =
        new Service(
            new Service.Options(idx, kernels, checkpointInterval, allowNonFinite, dedupTtl),
            checkpoints, restored, Service.WriteGate.OPEN);
    PServerServer server = PServerServer.netty(service, port, maxMessageBytes, ops.attach(service)).start();
    ops.started(server);
    LOG.info(
        "pserver {} listening on :{} (standalone), kernels {}, checkpoints in {} every {}, {}",
        idx, server.port(), Kernels.description(), checkpoints.directory(), GoDuration.format(checkpointInterval),
        restored == null
            ? "no checkpoint recovered (fresh start)"
            : "recovered checkpoint " + restored.meta().uuid() + " with " + restored.entries().size() + " parameters");
    awaitSignalThenStop(server);
    ops.close();
    return 0;
  }

  /** Blocks until SIGTERM or SIGINT, then shuts down gracefully. */
  private void awaitSignalThenStop(PServerServer server) throws InterruptedException {
    CountDownLatch stop = new CountDownLatch(1);
    Signals.onTermination(stop::countDown);
    stop.await();
    LOG.info("signal received: draining calls in flight, then a final checkpoint");
    server.shutdown(shutdownGrace);
    LOG.info("stopped");
  }
}
