package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.rpc.InProcessPServer.f32;
import static org.pserver.rpc.InProcessPServer.floats;
import static org.pserver.rpc.InProcessPServer.grad;
import static org.pserver.rpc.InProcessPServer.param;
import static org.pserver.rpc.InProcessPServer.sgd;

import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyServerBuilder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.kernels.Kernels;
import org.pserver.metrics.Metrics;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.StatusRequest;
import org.pserver.service.Service;
import org.pserver.testing.TestCertificates;
import org.pserver.testing.TestCertificates.Issued;

/**
 * TLS, mutual TLS and the bearer token on a real loopback port, with certificates made at test
 * time. Every refused client is refused before its call reaches the service: the service's
 * parameters are unchanged and it saw no gradient and sent no parameter.
 */
class ServerSecurityTest {
  private static final String TOKEN = "s3cret-token-0123456789";

  @TempDir static Path certs;
  static Issued ca;
  static Issued serverCert;
  static Issued clientCert;
  static Issued rogueCa;
  static Issued rogueClient;

  @TempDir Path dir;
  final List<ManagedChannel> channels = new ArrayList<>();
  /** Counts every gradient and parameter the service handled, refused or not. */
  final AtomicInteger reachedService = new AtomicInteger();
  Service service;
  PServerServer server;
  ServerSecurity security;

  @BeforeAll
  static void makeCertificates() throws Exception {
    ca = TestCertificates.ca(certs, "ca");
    serverCert = TestCertificates.server(certs, "server", ca);
    clientCert = TestCertificates.client(certs, "trainer", ca);
    rogueCa = TestCertificates.ca(certs, "rogue-ca");
    rogueClient = TestCertificates.client(certs, "rogue-trainer", rogueCa);
  }

  @AfterEach
  void stop() {
    channels.forEach(ManagedChannel::shutdownNow);
    if (server != null) {
      server.shutdown(Duration.ofSeconds(5));
    }
  }

  /** Starts a pserver with {@code security} holding w = [1, 2, 3], initialized. */
  private void start(ServerSecurity security) throws Exception {
    this.security = security;
    service = new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), null, null, Service.WriteGate.OPEN);
    service.setMetrics(new Metrics() {
      @Override
      public void gradientsReceived(int count, long bytes) {
        reachedService.addAndGet(count);
      }

      @Override
      public void parametersSent(int count, long bytes) {
        reachedService.addAndGet(count);
      }
    });
    Consumer<NettyServerBuilder> apply = security::applyTo;
    server = PServerServer.netty(service, 0, PServerServer.DEFAULT_MAX_MESSAGE_BYTES, apply).start();
    PServerGrpc.PServerBlockingStub admin = stub(trusted());
    admin.initParam(param("w", ElementType.FLOAT32, f32(1, 2, 3), sgd(1, 0)));
    admin.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    reachedService.set(0);
  }

  /** The client settings the server accepts, whatever it requires. */
  private ClientSecurity trusted() {
    ClientSecurity.Builder b = ClientSecurity.builder().token(BearerToken.of(TOKEN));
    if (security.tls()) {
      b.trust(ca.certFile()).clientCertificate(clientCert.certFile(), clientCert.keyFile());
    }
    return b.build();
  }

  private PServerGrpc.PServerBlockingStub stub(ClientSecurity security) {
    ManagedChannel ch = security.channel("localhost:" + server.port());
    channels.add(ch);
    return PServerGrpc.newBlockingStub(ch).withDeadlineAfter(20, TimeUnit.SECONDS);
  }

  /** The client is refused with {@code code}, and nothing about the service changed. */
  private void assertRefused(Status.Code code, ClientSecurity client) {
    PServerGrpc.PServerBlockingStub s = stub(client);
    for (Runnable call : List.<Runnable>of(
        () -> s.sendGrad(grad("w", ElementType.FLOAT32, f32(5, 5, 5))),
        () -> s.initParam(param("v", ElementType.FLOAT32, f32(1), sgd(1, 0))),
        () -> s.getParam(GetParamRequest.newBuilder().setName("w").build()),
        () -> s.status(StatusRequest.getDefaultInstance()))) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, call::run);
      assertEquals(code, e.getStatus().getCode(), e.getStatus().toString());
    }
    assertEquals(0, reachedService.get(), "a refused call reached the service");
    assertEquals(1, service.status().parameterCount());
    assertArrayEquals(new float[] {1, 2, 3}, floats(stub(trusted()).getParam(GetParamRequest.newBuilder().setName("w").build()).getContent()));
    reachedService.set(0);
  }

  private static ClientSecurity.Builder client() {
    return ClientSecurity.builder();
  }

  @Test
  void tlsRefusesClientsThatDoNotTrustTheServerOrSpeakPlaintext() throws Exception {
    start(ServerSecurity.builder().tls(serverCert.certFile(), serverCert.keyFile()).build());
    assertRefused(Status.Code.UNAVAILABLE, ClientSecurity.plaintext());
    assertRefused(Status.Code.UNAVAILABLE, client().trust(null).build()); // the JDK's CAs only
    assertRefused(Status.Code.UNAVAILABLE, client().trust(rogueCa.certFile()).build());
    PServerGrpc.PServerBlockingStub ok = stub(client().trust(ca.certFile()).build());
    ok.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    assertArrayEquals(new float[] {0, 1, 2}, floats(ok.getParam(GetParamRequest.newBuilder().setName("w").build()).getContent()));
  }

  @Test
  void mutualTlsRefusesClientsWithoutACertificateFromTheClientCa() throws Exception {
    ServerSecurity security = ServerSecurity.builder().tls(serverCert.certFile(), serverCert.keyFile()).clientCa(ca.certFile()).build();
    assertTrue(security.mutualTls());
    start(security);
    assertRefused(Status.Code.UNAVAILABLE, client().trust(ca.certFile()).build());
    assertRefused(Status.Code.UNAVAILABLE, client().trust(ca.certFile()).clientCertificate(rogueClient.certFile(), rogueClient.keyFile()).build());
    // The server's own certificate is not a client certificate (no clientAuth usage).
    assertRefused(Status.Code.UNAVAILABLE, client().trust(ca.certFile()).clientCertificate(serverCert.certFile(), serverCert.keyFile()).build());
    stub(client().trust(ca.certFile()).clientCertificate(clientCert.certFile(), clientCert.keyFile()).build())
        .sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    assertEquals(1, reachedService.get());
  }

  @Test
  void theTokenIsRequiredOnEveryCallButHealthChecks() throws Exception {
    start(ServerSecurity.builder().token(BearerToken.of(TOKEN)).build());
    assertRefused(Status.Code.UNAUTHENTICATED, ClientSecurity.plaintext());
    assertRefused(Status.Code.UNAUTHENTICATED, client().token(BearerToken.of("wrong-token-0123456789")).build());
    assertRefused(Status.Code.UNAUTHENTICATED, client().token(BearerToken.of(TOKEN + "x")).build());
    // Health checks stay open (Kubernetes probes send no headers).
    ManagedChannel ch = ClientSecurity.plaintext().channel("localhost:" + server.port());
    channels.add(ch);
    assertEquals(HealthCheckResponse.ServingStatus.SERVING,
        HealthGrpc.newBlockingStub(ch).check(HealthCheckRequest.newBuilder().setService("").build()).getStatus());
    PServerGrpc.PServerBlockingStub ok = stub(client().token(BearerToken.of(TOKEN)).build());
    ok.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    assertArrayEquals(new float[] {0, 1, 2}, floats(ok.getParam(GetParamRequest.newBuilder().setName("w").build()).getContent()));
  }

  @Test
  void allTogether() throws Exception {
    ServerSecurity security = ServerSecurity.builder().tls(serverCert.certFile(), serverCert.keyFile())
        .clientCa(ca.certFile()).token(BearerToken.of(TOKEN)).build();
    assertEquals("TLS with client certificates, bearer token required", security.describe());
    start(security);
    assertRefused(Status.Code.UNAUTHENTICATED,
        client().trust(ca.certFile()).clientCertificate(clientCert.certFile(), clientCert.keyFile()).build());
    assertRefused(Status.Code.UNAVAILABLE, client().trust(ca.certFile()).token(BearerToken.of(TOKEN)).build());
    stub(trusted()).sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    assertEquals(1, reachedService.get());
  }

  @Test
  void badSettingsAreRefusedWithAReason() throws Exception {
    Path garbage = Files.writeString(dir.resolve("garbage.pem"), "not a pem file");
    Path missing = dir.resolve("missing.pem");
    assertMessage("both a certificate chain and a private key", () -> ServerSecurity.builder().tls(serverCert.certFile(), null).build());
    assertMessage("needs TLS", () -> ServerSecurity.builder().clientCa(ca.certFile()).build());
    assertMessage("not a readable file", () -> ServerSecurity.builder().tls(missing, serverCert.keyFile()).build());
    assertMessage("PKCS#8", () -> ServerSecurity.builder().tls(serverCert.certFile(), garbage).build());
    assertMessage("cannot use client CA", () -> ServerSecurity.builder().tls(serverCert.certFile(), serverCert.keyFile()).clientCa(garbage).build());
    assertMessage("cannot use certificate", () -> ServerSecurity.builder().tls(garbage, serverCert.keyFile()).build());
    assertMessage("both the certificate chain and the private key", () -> ClientSecurity.builder().clientCertificate(clientCert.certFile(), null).build());
    assertMessage("not a readable file", () -> ClientSecurity.builder().trust(missing).build());
    assertEquals("plaintext, no token", ServerSecurity.none().describe());
    assertFalse(ServerSecurity.none().tls());
  }

  @Test
  void bearerTokens() throws Exception {
    assertMessage("16 to 4096", () -> BearerToken.of("short"));
    assertMessage("visible ASCII", () -> BearerToken.of("has a space in it 0123"));
    assertMessage("visible ASCII", () -> BearerToken.of("has-a-newline\n0123456789"));
    BearerToken t = BearerToken.fromFile(Files.writeString(dir.resolve("token"), "  " + TOKEN + "\n", StandardCharsets.UTF_8));
    assertEquals("Bearer " + TOKEN, t.headerValue());
    assertTrue(t.matches("Bearer " + TOKEN));
    assertTrue(t.matches("bearer " + TOKEN));
    assertFalse(t.matches(TOKEN));
    assertFalse(t.matches("Bearer " + TOKEN.substring(1)));
    assertFalse(t.matches(null));
    assertFalse(t.toString().contains(TOKEN));
  }

  private static void assertMessage(String part, org.junit.jupiter.api.function.Executable call) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
    assertTrue(e.getMessage().contains(part), e.getMessage());
  }
}
