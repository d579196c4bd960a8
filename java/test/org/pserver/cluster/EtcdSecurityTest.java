package org.pserver.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.etcd.jetcd.Client;
import io.etcd.jetcd.ClientBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.testing.TestCertificates;
import org.pserver.testing.TestCertificates.Issued;

/** The etcd security settings: their rules, and what they put on a jetcd client builder. */
class EtcdSecurityTest {
  @TempDir Path dir;

  @Test
  void rules() {
    assertThrows(IllegalArgumentException.class, () -> new EtcdSecurity(null, dir.resolve("c"), null, null, null));
    assertThrows(IllegalArgumentException.class, () -> new EtcdSecurity(null, null, dir.resolve("k"), null, null));
    assertThrows(IllegalArgumentException.class, () -> new EtcdSecurity(null, null, null, "root", null));
    assertThrows(IllegalArgumentException.class, () -> new EtcdSecurity(null, null, null, null, "pw"));
    assertThrows(IllegalArgumentException.class, () -> new EtcdSecurity(null, null, null, "", "pw"));
    assertFalse(EtcdSecurity.NONE.tls());
    assertFalse(EtcdSecurity.NONE.authenticates());
    assertEquals("plaintext, no user", EtcdSecurity.NONE.describe());
  }

  @Test
  void thePasswordNeverShows() {
    EtcdSecurity s = new EtcdSecurity(null, null, null, "root", "hunter2-password");
    assertFalse(s.toString().contains("hunter2"), s.toString());
    assertFalse(s.describe().contains("hunter2"));
    assertEquals("plaintext, user root", s.describe());
  }

  @Test
  void appliesTlsAndCredentialsToTheJetcdBuilder() throws Exception {
    Issued ca = TestCertificates.ca(dir, "etcd-ca");
    Issued client = TestCertificates.client(dir, "pserver", ca);
    EtcdSecurity s = new EtcdSecurity(ca.certFile(), client.certFile(), client.keyFile(), "root", "pw");
    assertTrue(s.tls());
    assertEquals("TLS with a client certificate, user root", s.describe());
    ClientBuilder b = s.applyTo(Client.builder().endpoints("https://127.0.0.1:2379"));
    assertNotNull(b.sslContext());
    assertTrue(b.sslContext().isClient());
    assertEquals("root", b.user().toString(StandardCharsets.UTF_8));
    assertEquals("pw", b.password().toString(StandardCharsets.UTF_8));

    ClientBuilder plain = EtcdSecurity.NONE.applyTo(Client.builder().endpoints("http://127.0.0.1:2379"));
    assertNull(plain.sslContext());
    assertNull(plain.user());
  }

  @Test
  void unreadableOrGarbageFilesFailWithIoException() throws Exception {
    Path garbage = Files.writeString(dir.resolve("garbage.pem"), "nope");
    assertThrows(IOException.class, () -> new EtcdSecurity(dir.resolve("missing.pem"), null, null, null, null).applyTo(Client.builder()));
    IOException e = assertThrows(IOException.class, () -> new EtcdSecurity(garbage, null, null, null, null).applyTo(Client.builder()));
    assertTrue(e.getMessage().contains("TLS to etcd"), e.getMessage());
  }
}
