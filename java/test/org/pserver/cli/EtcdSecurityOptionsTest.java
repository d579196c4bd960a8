package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.cluster.EtcdSecurity;
import picocli.CommandLine;

/** {@code serve}'s etcd security flags become the {@link EtcdSecurity} the etcd wiring uses. */
class EtcdSecurityOptionsTest {
  @TempDir Path dir;

  private static EtcdSecurity parse(String... args) {
    ServeCommand cmd = new ServeCommand();
    new CommandLine(cmd).parseArgs(args);
    return cmd.etcdSecurity.toEtcdSecurity();
  }

  @Test
  void flagsBecomeTheValueObject() throws Exception {
    Path pw = Files.writeString(dir.resolve("pw"), "  s3cret\n");
    EtcdSecurity s = parse("--etcd-cacert", "/ca.pem", "--etcd-cert", "/c.pem", "--etcd-key", "/k.pem", "--etcd-user", "pserver", "--etcd-password-file", pw.toString());
    assertEquals(new EtcdSecurity(Path.of("/ca.pem"), Path.of("/c.pem"), Path.of("/k.pem"), "pserver", "s3cret"), s);
    assertEquals(EtcdSecurity.NONE, parse());
    assertEquals("pw", parse("--etcd-user", "u", "--etcd-password", "pw").password());
  }

  @Test
  void inconsistentFlagsAreRefused() throws Exception {
    Path pw = Files.writeString(dir.resolve("pw"), "x");
    assertThrows(IllegalArgumentException.class, () -> parse("--etcd-user", "u", "--etcd-password", "a", "--etcd-password-file", pw.toString()));
    assertThrows(IllegalArgumentException.class, () -> parse("--etcd-user", "u"));
    assertThrows(IllegalArgumentException.class, () -> parse("--etcd-cert", "/c.pem"));
    assertThrows(IllegalArgumentException.class, () -> parse("--etcd-user", "u", "--etcd-password-file", dir.resolve("missing").toString()));
  }
}
