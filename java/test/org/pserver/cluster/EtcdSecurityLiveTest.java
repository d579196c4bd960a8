package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.client.EtcdDirectory;
import org.pserver.client.EtcdSelector;
import org.pserver.testing.DaemonProcess;
import org.pserver.testing.TestCertificates;
import org.pserver.testing.TestCertificates.Issued;

/**
 * {@link EtcdSecurity} against a real etcd (Debian's etcd-server, installed by bin/test) serving
 * TLS, requiring client certificates and with authentication on: the right settings read and
 * write; a wrong password, no client certificate or an untrusted server are refused.
 */
class EtcdSecurityLiveTest {
  private static final String PASSWORD = "etcd-test-password";

  @TempDir static Path dir;
  static Issued ca;
  static Issued client;
  static String endpoint;
  static Process etcd;

  @BeforeAll
  static void startEtcd() throws Exception {
    ca = TestCertificates.ca(dir, "etcd-ca");
    Issued server = TestCertificates.server(dir, "etcd-server", ca);
    client = TestCertificates.client(dir, "pserver", ca);
    int port = DaemonProcess.freePort();
    int peer = DaemonProcess.freePort();
    endpoint = "https://127.0.0.1:" + port;
    Path log = dir.resolve("etcd.log");
    try {
      etcd = new ProcessBuilder("etcd", "--name", "t", "--data-dir", dir.resolve("data").toString(),
          "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
          "--listen-peer-urls", "http://127.0.0.1:" + peer, "--initial-advertise-peer-urls", "http://127.0.0.1:" + peer,
          "--initial-cluster", "t=http://127.0.0.1:" + peer,
          "--cert-file", server.certFile().toString(), "--key-file", server.keyFile().toString(),
          "--trusted-ca-file", ca.certFile().toString(), "--client-cert-auth")
          .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    } catch (java.io.IOException e) {
      fail("etcd is needed: run bin/test, which installs Debian's etcd-server (" + e.getMessage() + ")");
    }
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!Files.readString(log).contains("ready to serve client requests")) {
      if (!etcd.isAlive() || System.nanoTime() > until) {
        fail("etcd did not start:\n" + Files.readString(log));
      }
      Thread.sleep(50);
    }
    etcdctl("user", "add", "root:" + PASSWORD);
    etcdctl("auth", "enable");
  }

  private static void etcdctl(String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of("etcdctl", "--endpoints", endpoint, "--cacert", ca.certFile().toString(),
        "--cert", client.certFile().toString(), "--key", client.keyFile().toString()));
    cmd.addAll(List.of(args));
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().put("ETCDCTL_API", "3");
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0, String.join(" ", cmd) + ": " + out);
  }

  @AfterAll
  static void stopEtcd() throws Exception {
    if (etcd != null) {
      etcd.destroy();
      etcd.waitFor(10, TimeUnit.SECONDS);
    }
  }

  private static String roundTrip(EtcdSecurity security) throws Exception {
    // Fail fast instead of retrying: a refused connection or login is the answer here.
    try (Client c = security.applyTo(Client.builder().endpoints(endpoint).waitForReady(false).retryMaxAttempts(1)
        .retryMaxDuration(java.time.Duration.ofSeconds(2)).connectTimeout(java.time.Duration.ofSeconds(2))).build()) {
      ByteSequence key = ByteSequence.from("/pserver-test/k", StandardCharsets.UTF_8);
      c.getKVClient().put(key, ByteSequence.from("v", StandardCharsets.UTF_8)).get(10, TimeUnit.SECONDS);
      return c.getKVClient().get(key).get(10, TimeUnit.SECONDS).getKvs().get(0).getValue().toString(StandardCharsets.UTF_8);
    }
  }

  @Test
  void theRightSettingsReadAndWrite() throws Exception {
    assertEquals("v", roundTrip(new EtcdSecurity(ca.certFile(), client.certFile(), client.keyFile(), "root", PASSWORD)));
  }

  @Test
  @Timeout(value = 60, unit = TimeUnit.SECONDS)
  void trainersListAndElectThroughTheSecuredEtcdWithTheSameSettingsAsThePservers() throws Exception {
    EtcdSecurity security = new EtcdSecurity(ca.certFile(), client.certFile(), client.keyFile(), "root", PASSWORD);
    Duration dial = Duration.ofSeconds(5);
    try (EtcdClient pserver = EtcdClient.builder(endpoint).desiredPservers(1).dialTimeout(dial).ttlSeconds(5)
        .advertiseHost("127.0.0.1").security(security).build()) {
      assertEquals(0, pserver.register(7990));

      try (EtcdDirectory pservers = EtcdDirectory.connect(endpoint, dial, Duration.ofSeconds(20), security)) {
        assertEquals(1, pservers.size());
        pservers.awaitAll(Duration.ofSeconds(20));
        assertEquals("127.0.0.1:7990", pservers.address(0));
      }
      try (EtcdSelector first = new EtcdSelector(endpoint, dial, security);
          EtcdSelector later = new EtcdSelector(endpoint.replace("https://", ""), dial, security)) {
        // (a bare host:port follows the security settings: TLS here)
        assertTrue(first.select(), "the first trainer initializes");
        first.done();
        assertFalse(later.select(), "a later one does not");
      }
      assertThrows(IllegalArgumentException.class, () -> new EtcdSelector(endpoint.replace("https", "http"), dial, security),
          "TLS settings with an explicit http:// endpoint are a contradiction");
      // The settings matter: without them the trainer side gets nowhere.
      assertThrows(
          TimeoutException.class,
          () -> EtcdDirectory.connect(endpoint, Duration.ofMillis(500), Duration.ofMillis(1500)).close());
      try (EtcdInitSelector plain = new EtcdInitSelector(endpoint, Duration.ofMillis(500), 2, Duration.ofSeconds(2))) {
        assertThrows(Exception.class, plain::select);
      }
    }
  }

  @Test
  void wrongSettingsAreRefused() {
    // A wrong password, no client certificate, a server the client does not trust, no TLS at all.
    java.util.Map<EtcdSecurity, String> cases = new java.util.LinkedHashMap<>();
    cases.put(new EtcdSecurity(ca.certFile(), client.certFile(), client.keyFile(), "root", "wrong-password"), "authentication failed");
    cases.put(new EtcdSecurity(ca.certFile(), null, null, "root", PASSWORD), "bad_certificate");
    cases.put(new EtcdSecurity(null, client.certFile(), client.keyFile(), "root", PASSWORD), "UNAVAILABLE");
    cases.put(new EtcdSecurity(null, null, null, "root", PASSWORD), "UNAVAILABLE");
    cases.forEach((bad, why) -> {
      Exception e = assertThrows(Exception.class, () -> roundTrip(bad), bad.toString());
      StringBuilder chain = new StringBuilder();
      for (Throwable t = e; t != null; t = t.getCause()) {
        chain.append(t).append('\n');
      }
      assertTrue(chain.toString().contains(why), bad.describe() + " refused, but not for " + why + ":\n" + chain);
    });
  }
}
