package org.pserver.cli;

import java.io.IOException;
import java.nio.file.Path;
import org.pserver.rpc.BearerToken;
import org.pserver.rpc.ServerSecurity;
import picocli.CommandLine.Option;

/**
 * {@code pserver serve}'s flags for securing the gRPC port, as a picocli mixin: TLS, client
 * certificates (mTLS) and a shared bearer token. All off by default (plaintext, no token). Each can
 * also come from {@code PSERVER_<NAME>}; the command line wins.
 *
 * <p>Trap: {@code --auth-token} on the command line shows in the process list; prefer {@code
 * PSERVER_AUTH_TOKEN} or {@code --auth-token-file}.
 */
final class TlsOptions {
  @Option(names = "--tls-cert", defaultValue = "${env:PSERVER_TLS_CERT}", description = "PEM certificate chain of the gRPC port; with --tls-key turns TLS on.")
  Path cert;

  @Option(names = "--tls-key", defaultValue = "${env:PSERVER_TLS_KEY}", description = "PEM private key (unencrypted PKCS#8) for --tls-cert.")
  Path key;

  @Option(names = "--tls-client-ca", defaultValue = "${env:PSERVER_TLS_CLIENT_CA}", description = "PEM CA certificates: require client certificates signed by them (mutual TLS).")
  Path clientCa;

  @Option(names = "--auth-token", defaultValue = "${env:PSERVER_AUTH_TOKEN}", description = "shared bearer token every RPC but health checks must carry (16+ visible ASCII characters).")
  String token;

  @Option(names = "--auth-token-file", defaultValue = "${env:PSERVER_AUTH_TOKEN_FILE}", description = "file holding the bearer token (surrounding white space is ignored).")
  Path tokenFile;

  /**
   * The settings, files read and checked.
   *
   * @throws IllegalArgumentException naming the problem (both token flags, a bad file or token)
   */
  ServerSecurity toServerSecurity() {
    if (token != null && tokenFile != null) {
      throw new IllegalArgumentException("give --auth-token or --auth-token-file, not both");
    }
    BearerToken t;
    try {
      t = tokenFile != null ? BearerToken.fromFile(tokenFile) : token != null ? BearerToken.of(token) : null;
    } catch (IOException e) {
      throw new IllegalArgumentException("--auth-token-file: cannot read " + tokenFile + ": " + e.getMessage(), e);
    }
    ServerSecurity.Builder b = ServerSecurity.builder().token(t).clientCa(clientCa);
    if (cert != null || key != null) {
      b.tls(cert, key);
    }
    return b.build();
  }
}
