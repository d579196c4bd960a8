package org.pserver.cli;

import picocli.CommandLine.Option;

/**
 * {@code pserver serve}'s monitoring flags, as a picocli mixin: the Prometheus metrics port and
 * the plaintext health port for Kubernetes probes. Both are off (0) by default. Each can also come
 * from {@code PSERVER_<NAME>}; the command line wins.
 */
final class MonitoringOptions {
  @Option(names = "--metrics-port", defaultValue = "${env:PSERVER_METRICS_PORT:-0}", description = "serve Prometheus metrics over HTTP at :PORT/metrics; 0 = off (default).")
  int metricsPort;

  @Option(names = "--health-port", defaultValue = "${env:PSERVER_HEALTH_PORT:-0}", description = "also serve gRPC health checks, in plaintext and without token, on this port (for Kubernetes grpc probes when the main port uses TLS); 0 = off (default).")
  int healthPort;
}
