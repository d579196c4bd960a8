package org.pserver.cluster;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.ClientBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.pserver.tls.TlsContexts;

/**
 * How a pserver authenticates to etcd and secures the connection: TLS trusting {@code caCert}
 * (PEM; null with TLS: the JDK's trust store), an optional client certificate ({@code cert} and
 * {@code key}: PEM, the key unencrypted PKCS#8), and an optional etcd user and password. {@link
 * #applyTo} puts them on a jetcd {@link ClientBuilder}; the etcd endpoints should then use {@code
 * https://}.
 *
 * <p>Every field may be null. Rules, checked on construction: {@code cert} and {@code key} come
 * together; {@code user} and {@code password} come together. TLS is on when a CA or a client
 * certificate is given.
 *
 * <p>Traps: {@link #toString()} hides the password, but the record's accessor returns it; etcd
 * also accepts the client certificate's common name as the user when auth is on and no password is
 * given (etcd's rule, not ours); files are read when {@link #applyTo} runs.
 */
public record EtcdSecurity(Path caCert, Path cert, Path key, String user, String password) {
  /** No TLS, no authentication. */
  public static final EtcdSecurity NONE = new EtcdSecurity(null, null, null, null, null);

  public EtcdSecurity {
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException("an etcd client certificate needs both the certificate and the key");
    }
    if ((user == null) != (password == null)) {
      throw new IllegalArgumentException("etcd authentication needs both a user and a password");
    }
    if (user != null && user.isEmpty()) {
      throw new IllegalArgumentException("the etcd user is empty");
    }
  }

  /** Whether the connection uses TLS. */
  public boolean tls() {
    return caCert != null || cert != null;
  }

  /** Whether a user and password are sent. */
  public boolean authenticates() {
    return user != null;
  }

  /**
   * Sets TLS and credentials on {@code builder} (nothing for {@link #NONE}).
   *
   * @throws IOException if a file cannot be read or is not a usable PEM certificate or key
   */
  public ClientBuilder applyTo(ClientBuilder builder) throws IOException {
    if (tls()) {
      try {
        builder.sslContext(TlsContexts.forClient(caCert, cert, key));
      } catch (IllegalArgumentException e) {
        throw new IOException("cannot set up TLS to etcd: " + e.getMessage(), e);
      }
    }
    if (user != null) {
      builder.user(ByteSequence.from(user, StandardCharsets.UTF_8))
          .password(ByteSequence.from(password, StandardCharsets.UTF_8));
    }
    return builder;
  }

  /** One line for logs, e.g. "TLS with a client certificate, user root". Never the password. */
  public String describe() {
    String transport = !tls() ? "plaintext" : cert != null ? "TLS with a client certificate" : "TLS";
    return transport + (user == null ? ", no user" : ", user " + user);
  }

  @Override
  public String toString() {
    return "EtcdSecurity[caCert=" + caCert + ", cert=" + cert + ", key=" + key + ", user=" + user
        + ", password=" + (password == null ? "null" : "(hidden)") + "]";
  }
}
