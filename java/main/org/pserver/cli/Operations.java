package org.pserver.cli;

import io.grpc.Server;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.pserver.metrics.Metrics;
import org.pserver.metrics.PrometheusMetrics;
import org.pserver.rpc.PServerServer;
import org.pserver.rpc.ServerSecurity;
import org.pserver.service.Service;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;

/**
 * The daemon's operational wiring, kept out of {@link ServeCommand}: gRPC port security (TLS, mTLS,
 * bearer token), Prometheus metrics and their HTTP endpoint, and the plaintext health port.
 *
 * <p>Order of use: {@link #open} (checks the flags, starts the metrics endpoint, so a slow
 * recovery is already observable), hand {@link #metrics()} to the checkpoint manager before
 * recovery, {@link #attach} the service and build the server with the customizer it returns,
 * {@link #started} once the server runs, {@link #close} after the server has shut down.
 *
 * <p>The health port serves the server's own health statuses (SERVING while writes are accepted,
 * so it fits a readiness probe) plus {@value #LIVENESS}, SERVING for as long as the server runs:
 * liveness must not fail while the pserver is merely fenced or waiting for etcd, or Kubernetes
 * would restart every pserver during an etcd outage.
 */
final class Operations implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(Operations.class);
  /** The health service name for liveness probes. */
  static final String LIVENESS = "liveness";

  private final MonitoringOptions monitoring;
  private final ServerSecurity security;
  private final PrometheusMetrics prometheus;
  private final HTTPServer metricsServer;
  private Server healthServer;

  private Operations(MonitoringOptions monitoring, ServerSecurity security, PrometheusMetrics prometheus, HTTPServer metricsServer) {
    this.monitoring = monitoring;
    this.security = security;
    this.prometheus = prometheus;
    this.metricsServer = metricsServer;
  }

  /**
   * Checks the flags, reads the TLS files and starts the metrics endpoint (when enabled).
   *
   * @throws ParameterException for a bad flag, file or port
   */
  static Operations open(CommandSpec spec, MonitoringOptions monitoring, TlsOptions tls) {
    if (monitoring.metricsPort < 0 || monitoring.metricsPort > 65535 || monitoring.healthPort < 0 || monitoring.healthPort > 65535) {
      throw new ParameterException(spec.commandLine(), "--metrics-port and --health-port must be in 0..65535");
    }
    ServerSecurity security;
    try {
      security = tls.toServerSecurity();
    } catch (IllegalArgumentException e) {
      throw new ParameterException(spec.commandLine(), e.getMessage(), e);
    }
    if (security.tokenRequired() && !security.tls()) {
      LOG.warn("--auth-token without TLS: the token travels in clear text; use --tls-cert/--tls-key unless the network is trusted");
    }
    PrometheusMetrics prometheus = null;
    HTTPServer http = null;
    if (monitoring.metricsPort > 0) {
      prometheus = new PrometheusMetrics();
      try {
        http = prometheus.serve(monitoring.metricsPort);
      } catch (IOException e) {
        throw new ParameterException(spec.commandLine(), "--metrics-port " + monitoring.metricsPort + ": " + e.getMessage(), e);
      }
    }
    return new Operations(monitoring, security, prometheus, http);
  }

  /** Where the service and checkpoints report events: Prometheus, or nothing when metrics are off. */
  Metrics metrics() {
    return prometheus != null ? prometheus : Metrics.NONE;
  }

  /**
   * Connects the service to the metrics and returns the server builder customizer: TLS, the token
   * check and the per-RPC metrics (added last, so it runs first and counts refused calls too).
   */
  Consumer<NettyServerBuilder> attach(Service service) {
    if (prometheus != null) {
      service.setMetrics(prometheus);
      prometheus.watch(() -> {
        Service.Status s = service.status();
        return new PrometheusMetrics.State(
            s.initialized(), s.serving(), s.parameterCount(), s.parameterBytes(), s.kernels(),
            s.lastCheckpoint() == null ? 0 : s.lastCheckpoint().timestamp());
      });
    }
    return b -> {
      security.applyTo(b);
      if (prometheus != null) {
        b.intercept(prometheus.rpcInterceptor());
      }
    };
  }

  /** Starts the health port (when enabled) and logs the operational settings. */
  void started(PServerServer server) throws IOException {
    server.health().setStatus(LIVENESS, ServingStatus.SERVING);
    if (monitoring.healthPort > 0) {
      healthServer =
          NettyServerBuilder.forAddress(new InetSocketAddress(monitoring.healthPort))
              .addService(server.health().getHealthService())
              .build()
              .start();
    }
    LOG.info(
        "gRPC port security: {}; metrics: {}; health port: {}",
        security.describe(),
        metricsServer == null ? "off" : ":" + metricsServer.getPort() + "/metrics",
        healthServer == null ? "off (health on the gRPC port)" : ":" + healthServer.getPort() + " (plaintext, services \"\", pserver.PServer, " + LIVENESS + ")");
  }

  /** Stops the health port and the metrics endpoint. Call after the server has shut down. */
  @Override
  public void close() {
    if (healthServer != null) {
      healthServer.shutdownNow();
      try {
        healthServer.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
    if (metricsServer != null) {
      metricsServer.close();
    }
  }
}
