package org.pserver.rpc;

import io.grpc.netty.NettyServerBuilder;
import io.netty.handler.ssl.SslContext;
import java.nio.file.Path;
import org.pserver.tls.TlsContexts;

/**
 * Transport security and authentication of a pserver's gRPC port: TLS with a server certificate,
 * optionally requiring client certificates signed by a given CA (mutual TLS), and optionally a
 * shared {@link BearerToken} on every call. Apply it to the server builder with {@link #applyTo}
 * (e.g. through {@link PServerServer#netty(org.pserver.service.Service, int, int,
 * java.util.function.Consumer)}).
 *
 * <p>What is refused, and where: a client that does not trust the server's certificate, or (with
 * mTLS) has no certificate from the client CA, fails the TLS handshake and never sends an RPC; a
 * call without the right token gets UNAUTHENTICATED before it reaches the service. Health checks
 * ({@code grpc.health.v1.Health}) need no token, but do need TLS when TLS is on; Kubernetes probes
 * speak plaintext only, so give them a separate health port.
 *
 * <p>Files are PEM: the certificate chain (leaf first) and an <em>unencrypted PKCS#8</em> private
 * key ({@code -----BEGIN PRIVATE KEY-----}; convert a PKCS#1 "RSA PRIVATE KEY" with {@code openssl
 * pkcs8 -topk8 -nocrypt}). They are read once, when {@link Builder#build()} runs: replacing them
 * later needs a restart. TLS runs on the JDK's provider (no netty-tcnative).
 *
 * <p>Immutable and thread-safe.
 */
public final class ServerSecurity {
  private static final ServerSecurity NONE = new ServerSecurity(null, false, null);

  private final SslContext ssl;
  private final boolean mutual;
  private final BearerToken token;

  private ServerSecurity(SslContext ssl, boolean mutual, BearerToken token) {
    this.ssl = ssl;
    this.mutual = mutual;
    this.token = token;
  }

  /** Plaintext, no token: the default. */
  public static ServerSecurity none() {
    return NONE;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Whether the port speaks TLS. */
  public boolean tls() {
    return ssl != null;
  }

  /** Whether clients must present a certificate from the client CA. */
  public boolean mutualTls() {
    return mutual;
  }

  /** Whether every call except health checks must carry the bearer token. */
  public boolean tokenRequired() {
    return token != null;
  }

  /** Sets the TLS context and adds the token check (when configured) to {@code builder}. */
  public void applyTo(NettyServerBuilder builder) {
    if (ssl != null) {
      builder.sslContext(ssl);
    }
    if (token != null) {
      builder.intercept(new BearerTokenInterceptor(token));
    }
  }

  /** One line for the start-up log, e.g. "TLS with client certificates, bearer token required". */
  public String describe() {
    String transport = ssl == null ? "plaintext" : mutual ? "TLS with client certificates" : "TLS";
    return transport + (token == null ? ", no token" : ", bearer token required");
  }

  @Override
  public String toString() {
    return "ServerSecurity[" + describe() + "]";
  }

  /** Collects the settings; {@link #build()} reads the files and checks they fit together. */
  public static final class Builder {
    private Path certChain;
    private Path privateKey;
    private Path clientCa;
    private BearerToken token;

    private Builder() {}

    /** TLS with this certificate chain and private key (PEM; the key unencrypted PKCS#8). */
    public Builder tls(Path certChain, Path privateKey) {
      this.certChain = certChain;
      this.privateKey = privateKey;
      return this;
    }

    /** Require client certificates signed by a CA in this PEM file (needs {@link #tls}). */
    public Builder clientCa(Path clientCa) {
      this.clientCa = clientCa;
      return this;
    }

    /** Require this token on every call but health checks; null: none. */
    public Builder token(BearerToken token) {
      this.token = token;
      return this;
    }

    /**
     * The settings, with the TLS context built now.
     *
     * @throws IllegalArgumentException naming the problem: a certificate without a key (or the
     *     reverse), a client CA without TLS, an unreadable file, or one that is not a usable PEM
     *     certificate or key
     */
    public ServerSecurity build() {
      if ((certChain == null) != (privateKey == null)) {
        throw new IllegalArgumentException("TLS needs both a certificate chain and a private key");
      }
      if (clientCa != null && certChain == null) {
        throw new IllegalArgumentException("client certificate verification (a client CA) needs TLS: give a certificate and key");
      }
      if (certChain == null) {
        return token == null ? NONE : new ServerSecurity(null, false, token);
      }
      SslContext ctx = TlsContexts.forServer(certChain, privateKey, clientCa);
      return new ServerSecurity(ctx, clientCa != null, token);
    }
  }
}
