package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.rpc.InProcessPServer.f32;
import static org.pserver.rpc.InProcessPServer.grad;
import static org.pserver.rpc.InProcessPServer.param;
import static org.pserver.rpc.InProcessPServer.sgd;

import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;
import org.pserver.metrics.Metrics;
import org.pserver.metrics.PrometheusMetrics;
import org.pserver.proto.CheckpointMeta;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.Gradient;
import org.pserver.proto.PServerGrpc;
import org.pserver.service.Service;
import org.pserver.testing.Scrape;

/**
 * A live pserver on a real (loopback) port with its Prometheus endpoint: the numbers scraped move
 * with the traffic sent.
 */
class MetricsEndpointTest {
  private static final String SEND = "{code=\"OK\",method=\"SendGrad\",service=\"pserver.PServer\"}";

  @TempDir Path dir;
  PrometheusMetrics metrics;
  Service service;
  PServerServer server;
  HTTPServer http;
  ManagedChannel channel;
  PServerGrpc.PServerBlockingStub stub;

  @BeforeEach
  void start() throws Exception {
    metrics = new PrometheusMetrics();
    CheckpointManager checkpoints = new CheckpointManager(dir, 0, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3));
    checkpoints.setMetrics(metrics);
    service = new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), checkpoints, null, Service.WriteGate.OPEN);
    service.setMetrics(metrics);
    metrics.watch(() -> {
      Service.Status s = service.status();
      return new PrometheusMetrics.State(s.initialized(), s.serving(), s.parameterCount(), s.parameterBytes(), s.kernels(),
          s.lastCheckpoint() == null ? 0 : s.lastCheckpoint().timestamp());
    });
    server = PServerServer.netty(service, 0, PServerServer.DEFAULT_MAX_MESSAGE_BYTES, b -> b.intercept(metrics.rpcInterceptor())).start();
    http = metrics.serve(0);
    channel = ManagedChannelBuilder.forTarget("127.0.0.1:" + server.port()).usePlaintext().build();
    stub = PServerGrpc.newBlockingStub(channel).withDeadlineAfter(30, java.util.concurrent.TimeUnit.SECONDS);
  }

  @AfterEach
  void stop() {
    channel.shutdownNow();
    server.shutdown(Duration.ofSeconds(5));
    http.close();
  }

  private Scrape scrape() throws Exception {
    return Scrape.of(http.getPort());
  }

  private static String rejected(Metrics.Rejection r) {
    return "pserver_gradients_rejected_total{reason=\"" + r.label() + "\"}";
  }

  @Test
  void countersFollowTheTraffic() throws Exception {
    Scrape s0 = scrape();
    assertEquals(0, s0.value("pserver_gradients_applied_total"));
    for (Metrics.Rejection r : Metrics.Rejection.values()) {
      assertEquals(0, s0.value(rejected(r)), "every reason is exposed from the start");
    }
    assertEquals(0, s0.value("pserver_initialized"));
    assertEquals(1, s0.value("pserver_lease_state{state=\"standalone\"}"));
    assertEquals(0, s0.value("pserver_lease_state{state=\"held\"}"));
    assertEquals(1, s0.value("pserver_kernels_info{kernels=\"" + Kernels.get().name() + "\"}"));
    assertFalse(s0.hasMetric("pserver_checkpoint_age_seconds"), "no checkpoint yet");
    assertTrue(s0.hasMetric("jvm_memory_used_bytes") && s0.hasMetric("jvm_threads_current")
        && s0.hasMetric("jvm_buffer_pool_used_bytes") && s0.hasMetric("process_cpu_seconds_total"), "JVM basics");

    stub.initParam(param("w", ElementType.FLOAT32, f32(1, 2, 3), sgd(0.5, 0)));
    assertThrows(StatusRuntimeException.class, () -> stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1))));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    int n = 7;
    for (int i = 0; i < n; i++) {
      stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    }
    Scrape s1 = scrape();
    assertEquals(n, s1.value("pserver_gradients_applied_total"));
    assertEquals(n + 1, s1.value("pserver_gradients_received_total"));
    assertEquals((n + 1) * 12, s1.value("pserver_gradient_bytes_received_total"));
    assertEquals(1, s1.value(rejected(Metrics.Rejection.UNINITIALIZED)));
    assertEquals(n, s1.value("pserver_update_duration_seconds_count"));
    assertEquals(n, s1.value("pserver_rpc_handled_total" + SEND));
    assertEquals(1, s1.value("pserver_rpc_handled_total{code=\"FAILED_PRECONDITION\",method=\"SendGrad\",service=\"pserver.PServer\"}"));
    assertEquals(n + 1, s1.value("pserver_rpc_duration_seconds_count{method=\"SendGrad\",service=\"pserver.PServer\"}"));
    assertEquals(1, s1.value("pserver_initialized"));
    assertEquals(1, s1.value("pserver_serving"));
    assertEquals(1, s1.value("pserver_parameters"));
    assertEquals(12, s1.value("pserver_parameter_bytes"));

    // Each kind of bad gradient is refused, counted under its reason, and applies nothing.
    assertThrows(StatusRuntimeException.class, () -> stub.sendGrad(grad("w", ElementType.FLOAT32, f32(Float.NaN, 1, 1))));
    assertThrows(StatusRuntimeException.class, () -> stub.sendGrad(grad("nope", ElementType.FLOAT32, f32(1, 1, 1))));
    assertThrows(StatusRuntimeException.class, () -> stub.sendGrad(grad("w", ElementType.FLOAT64, f32(1, 1, 1, 1, 1, 1))));
    assertThrows(StatusRuntimeException.class, () -> stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1))));
    Scrape s2 = scrape();
    assertEquals(1, s2.value(rejected(Metrics.Rejection.NON_FINITE)));
    assertEquals(1, s2.value(rejected(Metrics.Rejection.NOT_FOUND)));
    assertEquals(1, s2.value(rejected(Metrics.Rejection.TYPE_MISMATCH)));
    assertEquals(1, s2.value(rejected(Metrics.Rejection.LENGTH_MISMATCH)));
    assertEquals(n, s2.value("pserver_gradients_applied_total"));
    assertEquals(3, s2.value("pserver_rpc_handled_total{code=\"INVALID_ARGUMENT\",method=\"SendGrad\",service=\"pserver.PServer\"}"));
    assertEquals(1, s2.value("pserver_rpc_handled_total{code=\"NOT_FOUND\",method=\"SendGrad\",service=\"pserver.PServer\"}"));

    // A retried push is acknowledged as a duplicate, counted, and not applied again.
    Gradient once = grad("w", ElementType.FLOAT32, f32(1, 1, 1)).toBuilder().setTrainerId("t1").setSeq(1).build();
    assertFalse(stub.sendGrad(once).getDuplicate());
    assertTrue(stub.sendGrad(once).getDuplicate());
    Scrape s3 = scrape();
    assertEquals(n + 1, s3.value("pserver_gradients_applied_total"));
    assertEquals(1, s3.value("pserver_gradients_duplicate_total"));

    stub.getParam(GetParamRequest.newBuilder().setName("w").build());
    Scrape s4 = scrape();
    assertEquals(1, s4.value("pserver_parameters_sent_total"));
    assertEquals(12, s4.value("pserver_parameter_bytes_sent_total"));
  }

  @Test
  void checkpointMetricsAppearAfterACheckpoint() throws Exception {
    stub.initParam(param("w", ElementType.FLOAT32, f32(1, 2, 3), sgd(0.5, 0)));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    Scrape before = scrape();
    assertEquals(0, before.value("pserver_checkpoints_taken_total"));
    assertFalse(before.hasMetric("pserver_checkpoint_age_seconds"));

    CheckpointMeta m = stub.checkpoint(CheckpointRequest.getDefaultInstance());
    Scrape after = scrape();
    assertEquals(1, after.value("pserver_checkpoints_taken_total"));
    assertEquals(0, after.value("pserver_checkpoint_failures_total"));
    assertEquals(1, after.value("pserver_checkpoint_duration_seconds_count"));
    assertEquals(Files.size(Path.of(m.getPath())), after.value("pserver_checkpoint_size_bytes"));
    double age = after.value("pserver_checkpoint_age_seconds");
    assertTrue(age >= 0 && age < 60, "age " + age);
    assertEquals(m.getTimestamp() / 1e9, after.value("pserver_checkpoint_last_timestamp_seconds"), 1e-3);

    // A checkpoint that cannot be written is counted as a failure.
    Files.delete(Path.of(m.getPath()));
    Files.list(dir).forEach(p -> p.toFile().delete());
    Files.delete(dir);
    Files.writeString(dir, "a file where the directory should be");
    assertThrows(StatusRuntimeException.class, () -> stub.checkpoint(CheckpointRequest.getDefaultInstance()));
    assertEquals(1, scrape().value("pserver_checkpoint_failures_total"));
    Files.delete(dir);
  }

  @Test
  void registrationIsReportedThroughTheHook() throws Exception {
    metrics.registration(Metrics.LeaseState.HELD, 3);
    Scrape s = scrape();
    assertEquals(1, s.value("pserver_lease_state{state=\"held\"}"));
    assertEquals(0, s.value("pserver_lease_state{state=\"standalone\"}"));
    assertEquals(3, s.value("pserver_registered_index"));
  }
}
