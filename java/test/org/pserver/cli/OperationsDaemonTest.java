package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.Gradient;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.Parameter;
import org.pserver.proto.ParameterWithConfig;
import org.pserver.rpc.BearerToken;
import org.pserver.rpc.ClientSecurity;
import org.pserver.testing.DaemonProcess;
import org.pserver.testing.Scrape;
import org.pserver.testing.TestCertificates;
import org.pserver.testing.TestCertificates.Issued;

/** The daemon's operational flags end to end: metrics, the health port, TLS, mTLS and the token. */
class OperationsDaemonTest {
  private static final Path LOGS = Path.of(System.getProperty("pserver.test.tmp", "target/test-tmp"), "daemon-logs");
  private static final String TOKEN = "daemon-token-0123456789abcdef";

  @TempDir Path dir;

  private static ByteString longs(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long x : v) {
      b.putLong(x);
    }
    return ByteString.copyFrom(b.array());
  }

  private static ServingStatus health(int port, String service) {
    ManagedChannel ch = ClientSecurity.plaintext().channel("127.0.0.1:" + port);
    try {
      return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
          .check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus();
    } finally {
      ch.shutdownNow();
    }
  }

  private static void train(PServerGrpc.PServerBlockingStub stub, int pushes) {
    stub.initParam(ParameterWithConfig.newBuilder()
        .setParam(Parameter.newBuilder().setName("c").setElementType(ElementType.INT64).setContent(longs(0, 0)))
        .build());
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    for (int i = 0; i < pushes; i++) {
      stub.sendGrad(Gradient.newBuilder().setName("c").setElementType(ElementType.INT64).setContent(longs(1, 1)).build());
    }
  }

  @Test
  void metricsAndHealthPortOfARealDaemon() throws Exception {
    int metricsPort = DaemonProcess.freePort();
    int healthPort = DaemonProcess.freePort();
    try (DaemonProcess d = DaemonProcess.serve(LOGS, List.of(), "--checkpoint-path", dir.toString(), "--checkpoint-interval", "0",
        "--metrics-port", Integer.toString(metricsPort), "--health-port", Integer.toString(healthPort))) {
      d.awaitLog("health port: :" + healthPort, Duration.ofSeconds(10));
      Scrape s0 = Scrape.of(metricsPort);
      assertEquals(1, s0.value("pserver_lease_state{state=\"standalone\"}"));
      assertEquals(0, s0.value("pserver_registered_index"));
      assertEquals(0, s0.value("pserver_initialized"));
      assertEquals(ServingStatus.SERVING, health(healthPort, ""));
      assertEquals(ServingStatus.SERVING, health(healthPort, Operations.LIVENESS));

      ManagedChannel ch = ClientSecurity.plaintext().channel(d.target());
      try {
        PServerGrpc.PServerBlockingStub stub = PServerGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS);
        train(stub, 5);
        stub.checkpoint(CheckpointRequest.getDefaultInstance());
      } finally {
        ch.shutdownNow();
      }
      Scrape s1 = Scrape.of(metricsPort);
      assertEquals(5, s1.value("pserver_gradients_applied_total"));
      assertEquals(1, s1.value("pserver_initialized"));
      assertEquals(1, s1.value("pserver_checkpoints_taken_total"));
      assertTrue(s1.value("pserver_checkpoint_size_bytes") > 0);
      assertEquals(5, s1.value("pserver_rpc_handled_total{code=\"OK\",method=\"SendGrad\",service=\"pserver.PServer\"}"));
      assertEquals(0, d.terminate(Duration.ofSeconds(60)), d.log());
    }
  }

  @Test
  void tlsClientCertificatesAndTokenFromFlagsFilesAndEnvironment() throws Exception {
    Path certs = dir.resolve("certs");
    Issued ca = TestCertificates.ca(certs, "ca");
    Issued server = TestCertificates.server(certs, "server", ca);
    Issued client = TestCertificates.client(certs, "trainer", ca);
    int healthPort = DaemonProcess.freePort();
    try (DaemonProcess d = DaemonProcess.launch(LOGS, Map.of("PSERVER_AUTH_TOKEN", TOKEN, "PSERVER_HEALTH_PORT", Integer.toString(healthPort)), List.of(),
        "--checkpoint-path", dir.resolve("ckpt").toString(), "--checkpoint-interval", "0",
        "--tls-cert", server.certFile().toString(), "--tls-key", server.keyFile().toString(), "--tls-client-ca", ca.certFile().toString())) {
      assertTrue(d.awaitLog("gRPC port security: TLS with client certificates, bearer token required", Duration.ofSeconds(60)), d.log());
      assertEquals(ServingStatus.SERVING, health(healthPort, ""), "probes reach the plaintext health port");

      String target = "localhost:" + d.port();
      for (ClientSecurity refused : List.of(
          ClientSecurity.plaintext(),
          ClientSecurity.builder().trust(ca.certFile()).token(BearerToken.of(TOKEN)).build())) {
        ManagedChannel ch = refused.channel(target);
        try {
          StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
              () -> train(PServerGrpc.newBlockingStub(ch).withDeadlineAfter(20, TimeUnit.SECONDS), 1));
          assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), e.getStatus().toString());
        } finally {
          ch.shutdownNow();
        }
      }
      ClientSecurity.Builder mtls = ClientSecurity.builder().trust(ca.certFile()).clientCertificate(client.certFile(), client.keyFile());
      ManagedChannel noToken = mtls.build().channel(target);
      try {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
            () -> train(PServerGrpc.newBlockingStub(noToken).withDeadlineAfter(20, TimeUnit.SECONDS), 1));
        assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      } finally {
        noToken.shutdownNow();
      }
      Path tokenFile = Files.writeString(dir.resolve("token"), TOKEN + "\n");
      ManagedChannel ok = mtls.token(BearerToken.fromFile(tokenFile)).build().channel(target);
      try {
        train(PServerGrpc.newBlockingStub(ok).withDeadlineAfter(20, TimeUnit.SECONDS), 3);
      } finally {
        ok.shutdownNow();
      }
      assertEquals(0, d.terminate(Duration.ofSeconds(60)), d.log());
    }
  }

  @Test
  void badSecurityFlagsStopTheDaemonWithAUsageError() throws Exception {
    Path token = Files.writeString(dir.resolve("t"), TOKEN);
    for (List<String> args : List.of(
        List.of("--tls-cert", dir.resolve("missing.crt").toString()),
        List.of("--tls-client-ca", token.toString()),
        List.of("--auth-token", "short"),
        List.of("--auth-token", TOKEN, "--auth-token-file", token.toString()))) {
      List<String> all = new java.util.ArrayList<>(List.of("--checkpoint-path", dir.toString()));
      all.addAll(args);
      try (DaemonProcess d = DaemonProcess.launch(LOGS, List.of(), all.toArray(String[]::new))) {
        assertEquals(2, d.awaitExit(Duration.ofSeconds(60)), args + ": " + d.log());
        assertTrue(d.log().contains("Usage:"), d.log());
      }
    }
  }
}
