package org.pserver.rpc;

import io.grpc.CallCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.NettyChannelBuilder;
import io.netty.handler.ssl.SslContext;
import java.nio.file.Path;
import java.util.concurrent.Executor;
import org.pserver.tls.TlsContexts;

/**
 * The client side of {@link ServerSecurity}: makes gRPC channels to pservers with TLS (trusting a
 * given CA, or the JDK's default trust store), an optional client certificate (mutual TLS) and an
 * optional {@link BearerToken} attached to every call.
 *
 * <pre>{@code
 * ClientSecurity security = ClientSecurity.builder()
 *     .trust(Path.of("/etc/pserver/tls/ca.crt"))
 *     .clientCertificate(Path.of("/etc/pserver/tls/tls.crt"), Path.of("/etc/pserver/tls/tls.key"))
 *     .token(BearerToken.fromFile(Path.of("/etc/pserver/token")))
 *     .build();
 * ManagedChannel channel = security.channel("pserver-0.pserver:8001");   // or security::channel
 * }</pre>
 *
 * <p>Traps: the server's certificate must name the host in the target (or set {@link
 * Builder#authority}); a token without TLS is sent in clear text (allowed, for loopback and
 * service meshes that encrypt for you); the files are read once, in {@link Builder#build()}.
 * Immutable and thread-safe; one instance can make any number of channels.
 */
public final class ClientSecurity {
  private static final ClientSecurity PLAINTEXT = new ClientSecurity(null, null, null);

  private final SslContext ssl;
  private final BearerToken token;
  private final String authority;

  private ClientSecurity(SslContext ssl, BearerToken token, String authority) {
    this.ssl = ssl;
    this.token = token;
    this.authority = authority;
  }

  /** Plaintext, no token. */
  public static ClientSecurity plaintext() {
    return PLAINTEXT;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A channel builder for {@code target} ("host:port", or any gRPC target) with these settings. */
  public NettyChannelBuilder channelBuilder(String target) {
    NettyChannelBuilder b = NettyChannelBuilder.forTarget(target);
    if (ssl != null) {
      b.sslContext(ssl);
    } else {
      b.usePlaintext();
    }
    if (authority != null) {
      b.overrideAuthority(authority);
    }
    if (token != null) {
      b.intercept(new io.grpc.ClientInterceptor() {
        @Override
        public <Q, R> io.grpc.ClientCall<Q, R> interceptCall(
            io.grpc.MethodDescriptor<Q, R> method, io.grpc.CallOptions options, io.grpc.Channel next) {
          return next.newCall(method, options.withCallCredentials(callCredentials()));
        }
      });
    }
    return b;
  }

  /** A channel to {@code target} with these settings; the caller shuts it down. */
  public ManagedChannel channel(String target) {
    return channelBuilder(target).build();
  }

  /** Call credentials that attach the token, or null without one (for stubs on other channels). */
  public CallCredentials callCredentials() {
    if (token == null) {
      return null;
    }
    return new CallCredentials() {
      @Override
      public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
        Metadata m = new Metadata();
        m.put(BearerToken.AUTHORIZATION, token.headerValue());
        applier.apply(m);
      }
    };
  }

  /** Whether channels use TLS. */
  public boolean tls() {
    return ssl != null;
  }

  /** Collects the settings; {@link #build()} reads the files. */
  public static final class Builder {
    private boolean tls;
    private Path trustedCa;
    private Path certChain;
    private Path privateKey;
    private BearerToken token;
    private String authority;

    private Builder() {}

    /** Use TLS, trusting the CA certificates in this PEM file (null: the JDK's trust store). */
    public Builder trust(Path caCertificates) {
      this.tls = true;
      this.trustedCa = caCertificates;
      return this;
    }

    /** Present this client certificate (PEM chain, unencrypted PKCS#8 key); implies TLS. */
    public Builder clientCertificate(Path certChain, Path privateKey) {
      this.tls = true;
      this.certChain = certChain;
      this.privateKey = privateKey;
      return this;
    }

    /** Send this token on every call; null: none. */
    public Builder token(BearerToken token) {
      this.token = token;
      return this;
    }

    /** The host name to expect in the server's certificate instead of the target's host. */
    public Builder authority(String authority) {
      this.authority = authority;
      return this;
    }

    /**
     * The settings, with the TLS context built now.
     *
     * @throws IllegalArgumentException for a certificate without a key (or the reverse) or a file
     *     that is unreadable or not usable PEM
     */
    public ClientSecurity build() {
      if (!tls) {
        return token == null && authority == null ? PLAINTEXT : new ClientSecurity(null, token, authority);
      }
      return new ClientSecurity(TlsContexts.forClient(trustedCa, certChain, privateKey), token, authority);
    }
  }
}
