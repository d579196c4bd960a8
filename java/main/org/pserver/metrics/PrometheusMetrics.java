package org.pserver.metrics;

import io.grpc.ServerInterceptor;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * {@link Metrics} as Prometheus metrics, in a registry of its own (so several pservers in one JVM,
 * as in tests, do not collide), with the JVM's memory, buffer pool, GC, thread and process metrics,
 * gauges read from the pserver's state at scrape time ({@link #watch}), an interceptor for per-RPC
 * metrics ({@link #rpcInterceptor()}) and an HTTP endpoint ({@link #serve}).
 *
 * <p>The metrics (all prefixed {@code pserver_}; counters end in {@code _total}):
 *
 * <ul>
 *   <li>{@code gradients_received_total}, {@code gradient_bytes_received_total}; {@code
 *       gradients_applied_total}, {@code gradients_duplicate_total}, {@code
 *       gradients_rejected_total{reason}} with every {@link Metrics.Rejection} label present from
 *       the start (at 0);
 *   <li>{@code update_duration_seconds}: histogram of the time to check and apply one request's
 *       gradients (not the network);
 *   <li>{@code parameters_sent_total}, {@code parameter_bytes_sent_total};
 *   <li>{@code rpc_handled_total{service,method,code}} and {@code
 *       rpc_duration_seconds{service,method}}: every gRPC call, health checks included;
 *   <li>{@code kernels_info{kernels}}, {@code parameters}, {@code parameter_bytes}, {@code
 *       initialized}, {@code serving} (1 while writes are accepted);
 *   <li>{@code checkpoints_taken_total}, {@code checkpoint_failures_total}, {@code
 *       checkpoint_fallbacks_total}, {@code checkpoint_duration_seconds} (histogram), {@code
 *       checkpoint_size_bytes} (the last one written; 0 before), {@code checkpoint_last_timestamp_seconds} and {@code
 *       checkpoint_age_seconds} (of the last checkpoint taken or recovered; absent before the
 *       first);
 *   <li>{@code lease_state{state}} (1 for the current {@link Metrics.LeaseState}, 0 for the others;
 *       {@code standalone} until {@link #registration} says otherwise) and {@code
 *       registered_index} (-1 when none).
 * </ul>
 *
 * <p>Thread-safe. Trap: {@link #watch} can be called once per instance (a second call would
 * register the same gauges twice and throws).
 */
public final class PrometheusMetrics implements Metrics {
  /**
   * The pserver's state as the gauges read it at each scrape.
   *
   * @param lastCheckpointEpochNanos the last checkpoint's timestamp (ns since the epoch), 0 if none
   */
  public record State(
      boolean initialized,
      boolean serving,
      int parameters,
      long parameterBytes,
      String kernels,
      long lastCheckpointEpochNanos) {}

  private static final double NANOS = 1e9;

  private final PrometheusRegistry registry = new PrometheusRegistry();
  private final Counter received;
  private final Counter receivedBytes;
  private final Counter applied;
  private final Counter duplicate;
  private final Counter rejected;
  private final Histogram update;
  private final Counter sent;
  private final Counter sentBytes;
  private final Counter checkpointsTaken;
  private final Counter checkpointFailures;
  private final Counter checkpointFallbacks;
  private final Histogram checkpointDuration;
  private final Gauge checkpointSize;
  private final Gauge leaseState;
  private final Gauge registeredIndex;
  private final Counter rpcHandled;
  private final Histogram rpcDuration;

  public PrometheusMetrics() {
    JvmMetrics.builder().register(registry);
    received = counter("pserver_gradients_received_total", "Gradients that reached the service (one per parameter in a request).");
    receivedBytes = counter("pserver_gradient_bytes_received_total", "Content bytes of the gradients received.");
    applied = counter("pserver_gradients_applied_total", "Gradients applied to their parameter.");
    duplicate = counter("pserver_gradients_duplicate_total", "Gradients acknowledged without applying: their (trainer, seq) had been applied before.");
    rejected =
        Counter.builder()
            .name("pserver_gradients_rejected_total")
            .help("Gradients refused, by reason; a refused request refuses all its gradients.")
            .labelNames("reason")
            .register(registry);
    for (Rejection r : Rejection.values()) {
      rejected.labelValues(r.label());
    }
    update = histogram("pserver_update_duration_seconds", "Time to check and apply the gradients of one SendGrad(s) request, in the service.",
        new double[] {0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    sent = counter("pserver_parameters_sent_total", "Parameters returned to readers.");
    sentBytes = counter("pserver_parameter_bytes_sent_total", "Content bytes of the parameters returned.");
    checkpointsTaken = counter("pserver_checkpoints_taken_total", "Checkpoints written and published.");
    checkpointFailures = counter("pserver_checkpoint_failures_total", "Checkpoints that failed to be written or published.");
    checkpointFallbacks = counter("pserver_checkpoint_fallbacks_total", "Recoveries that could not use the published checkpoint.");
    checkpointDuration = histogram("pserver_checkpoint_duration_seconds", "Time to write, fsync and publish a checkpoint.",
        new double[] {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600});
    checkpointSize = Gauge.builder().name("pserver_checkpoint_size_bytes").help("Size of the last checkpoint file written.").register(registry);
    leaseState =
        Gauge.builder()
            .name("pserver_lease_state")
            .help("1 for the pserver's current registration state, 0 for the others.")
            .labelNames("state")
            .register(registry);
    registeredIndex = Gauge.builder().name("pserver_registered_index").help("The pserver index held, -1 for none.").register(registry);
    registration(LeaseState.STANDALONE, -1);
    rpcHandled =
        Counter.builder()
            .name("pserver_rpc_handled_total")
            .help("gRPC calls finished, by service, method and status code.")
            .labelNames("service", "method", "code")
            .register(registry);
    rpcDuration = histogram("pserver_rpc_duration_seconds", "gRPC call latency on the server, from the call's start to its status.",
        new double[] {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, "service", "method");
  }

  private Counter counter(String name, String help) {
    return Counter.builder().name(name).help(help).register(registry);
  }

  /** A classic histogram (native histograms only exist in the protobuf format, left out here). */
  private Histogram histogram(String name, String help, double[] upperBounds, String... labels) {
    return Histogram.builder().name(name).help(help).labelNames(labels).classicOnly().classicUpperBounds(upperBounds).register(registry);
  }

  /** The registry holding every metric (for embedding in another exporter). */
  public PrometheusRegistry registry() {
    return registry;
  }

  /**
   * Registers the gauges that read the pserver's state at each scrape: kernels, parameters,
   * initialized, serving, and the last checkpoint's time and age. Call once.
   */
  public PrometheusMetrics watch(Supplier<State> state) {
    Objects.requireNonNull(state, "state");
    Info kernels = Info.builder().name("pserver_kernels_info").help("The update kernels in use.").labelNames("kernels").register(registry);
    kernels.setLabelValues(state.get().kernels());
    gauge("pserver_parameters", "Parameters stored.", cb -> cb.call(state.get().parameters()));
    gauge("pserver_parameter_bytes", "Content bytes of the parameters stored (optimizer state not included).", cb -> cb.call(state.get().parameterBytes()));
    gauge("pserver_initialized", "1 once FinishInitParams succeeded or a checkpoint was recovered.", cb -> cb.call(state.get().initialized() ? 1 : 0));
    gauge("pserver_serving", "1 while the pserver acknowledges writes (not fenced, not shutting down).", cb -> cb.call(state.get().serving() ? 1 : 0));
    gauge("pserver_checkpoint_last_timestamp_seconds", "When the last checkpoint (taken or recovered) was created, in seconds since the epoch; absent before the first.", cb -> {
      long ns = state.get().lastCheckpointEpochNanos();
      if (ns > 0) {
        cb.call(ns / NANOS);
      }
    });
    gauge("pserver_checkpoint_age_seconds", "Seconds since the last checkpoint (taken or recovered) was created; absent before the first.", cb -> {
      long ns = state.get().lastCheckpointEpochNanos();
      if (ns > 0) {
        cb.call(Math.max(0, System.currentTimeMillis() / 1e3 - ns / NANOS));
      }
    });
    return this;
  }

  private void gauge(String name, String help, java.util.function.Consumer<GaugeWithCallback.Callback> callback) {
    GaugeWithCallback.builder().name(name).help(help).callback(callback).register(registry);
  }

  /**
   * A server interceptor that counts every call by service, method and status code and times it.
   * Add it last to the server builder so it runs first (outside authentication), and refused calls
   * are counted too.
   */
  public ServerInterceptor rpcInterceptor() {
    return new RpcMetricsInterceptor((service, method, code, nanos) -> {
      rpcHandled.labelValues(service, method, code).inc();
      rpcDuration.labelValues(service, method).observe(nanos / NANOS);
    });
  }

  /**
   * Serves {@code /metrics} (Prometheus text format) on {@code port} of every interface; 0 picks a
   * free port ({@link HTTPServer#getPort()}). Plain HTTP without authentication: keep the port
   * inside the cluster network. Close the server to stop it.
   */
  public HTTPServer serve(int port) throws IOException {
    return HTTPServer.builder().port(port).registry(registry).buildAndStart();
  }

  // --- Metrics ----------------------------------------------------------------------------------

  @Override
  public void gradientsReceived(int count, long bytes) {
    received.inc(count);
    receivedBytes.inc(bytes);
  }

  @Override
  public void gradientsApplied(int count, long nanos) {
    applied.inc(count);
    update.observe(nanos / NANOS);
  }

  @Override
  public void gradientsDuplicate(int count) {
    duplicate.inc(count);
  }

  @Override
  public void gradientsRejected(Rejection reason, int count) {
    rejected.labelValues(reason.label()).inc(count);
  }

  @Override
  public void parametersSent(int count, long bytes) {
    sent.inc(count);
    sentBytes.inc(bytes);
  }

  @Override
  public void checkpointTaken(long bytes, long nanos) {
    checkpointsTaken.inc();
    checkpointDuration.observe(nanos / NANOS);
    checkpointSize.set(bytes);
  }

  @Override
  public void checkpointFailed(long nanos) {
    checkpointFailures.inc();
  }

  @Override
  public void checkpointFallback() {
    checkpointFallbacks.inc();
  }

  @Override
  public synchronized void registration(LeaseState state, int index) {
    for (LeaseState s : LeaseState.values()) {
      leaseState.labelValues(s.label()).set(s == state ? 1 : 0);
    }
    registeredIndex.set(index);
  }
}
