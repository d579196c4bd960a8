package org.pserver.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.pserver.cluster.EtcdSecurity;
import picocli.CommandLine.Option;

/**
 * {@code pserver serve}'s flags for the etcd connection's security, as a picocli mixin: TLS (CA,
 * client certificate and key, the flag names of {@code etcdctl}) and etcd user and password. The
 * etcd wiring passes {@link #toEtcdSecurity()} to the jetcd client builder. Each flag can also come
 * from {@code PSERVER_<NAME>}; the command line wins.
 *
 * <p>Trap: {@code --etcd-password} on the command line shows in the process list; prefer {@code
 * PSERVER_ETCD_PASSWORD} or {@code --etcd-password-file}.
 */
final class EtcdSecurityOptions {
  @Option(names = "--etcd-cacert", defaultValue = "${env:PSERVER_ETCD_CACERT}", description = "PEM CA certificates to verify etcd's certificate; turns TLS to etcd on.")
  Path caCert;

  @Option(names = "--etcd-cert", defaultValue = "${env:PSERVER_ETCD_CERT}", description = "PEM client certificate for etcd (with --etcd-key); turns TLS to etcd on.")
  Path cert;

  @Option(names = "--etcd-key", defaultValue = "${env:PSERVER_ETCD_KEY}", description = "PEM private key (unencrypted PKCS#8) for --etcd-cert.")
  Path key;

  @Option(names = "--etcd-user", defaultValue = "${env:PSERVER_ETCD_USER}", description = "etcd user name (etcd authentication).")
  String user;

  @Option(names = "--etcd-password", defaultValue = "${env:PSERVER_ETCD_PASSWORD}", description = "password of --etcd-user.")
  String password;

  @Option(names = "--etcd-password-file", defaultValue = "${env:PSERVER_ETCD_PASSWORD_FILE}", description = "file holding the password of --etcd-user (surrounding white space is ignored).")
  Path passwordFile;

  /**
   * The settings.
   *
   * @throws IllegalArgumentException naming the problem (both password flags, a key without a
   *     certificate, a user without a password, an unreadable password file)
   */
  EtcdSecurity toEtcdSecurity() {
    if (password != null && passwordFile != null) {
      throw new IllegalArgumentException("give --etcd-password or --etcd-password-file, not both");
    }
    String pw = password;
    if (passwordFile != null) {
      try {
        pw = Files.readString(passwordFile, StandardCharsets.UTF_8).strip();
      } catch (IOException e) {
        throw new IllegalArgumentException("--etcd-password-file: cannot read " + passwordFile + ": " + e.getMessage(), e);
      }
    }
    return new EtcdSecurity(caCert, cert, key, user, pw);
  }
}
