package org.pserver.tls;

import io.grpc.netty.GrpcSslContexts;
import io.netty.handler.ssl.ClientAuth;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Netty TLS contexts for gRPC from PEM files, one way for every connection pserver makes or takes
 * (its gRPC port, trainers' channels, the etcd client): the JDK's TLS provider (netty-tcnative is
 * not on the class path), HTTP/2 ALPN as gRPC needs it, and errors that name the file at fault.
 *
 * <p>Files: certificate chains as PEM, leaf first; private keys as <em>unencrypted PKCS#8</em> PEM
 * ({@code -----BEGIN PRIVATE KEY-----}; convert others with {@code openssl pkcs8 -topk8 -nocrypt}).
 * They are read when the context is built; later changes to them are not seen.
 */
public final class TlsContexts {
  private TlsContexts() {}

  /**
   * A server context presenting {@code certChain}/{@code key}; with {@code clientCa}, clients must
   * present a certificate signed by a CA in that file (mutual TLS).
   *
   * @throws IllegalArgumentException naming the unreadable or unusable file
   */
  public static SslContext forServer(Path certChain, Path key, Path clientCa) {
    requireReadable(certChain, "certificate chain");
    requireReadable(key, "private key");
    if (clientCa != null) {
      requireReadable(clientCa, "client CA");
    }
    SslContextBuilder b;
    try {
      b = SslContextBuilder.forServer(certChain.toFile(), key.toFile());
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("cannot use certificate " + certChain + " and key " + key + ": "
          + rootMessage(e) + " (the key must be an unencrypted PKCS#8 PEM file)", e);
    }
    if (clientCa != null) {
      try {
        b.trustManager(clientCa.toFile()).clientAuth(ClientAuth.REQUIRE);
      } catch (RuntimeException e) {
        throw new IllegalArgumentException("cannot use client CA " + clientCa + ": " + rootMessage(e), e);
      }
    }
    return build(b);
  }

  /**
   * A client context trusting the CAs in {@code trustedCa} (null: the JDK's trust store) and, with
   * {@code certChain} and {@code key}, presenting that client certificate.
   *
   * @throws IllegalArgumentException for a certificate without a key (or the reverse), or naming
   *     the unreadable or unusable file
   */
  public static SslContext forClient(Path trustedCa, Path certChain, Path key) {
    if ((certChain == null) != (key == null)) {
      throw new IllegalArgumentException("a client certificate needs both the certificate chain and the private key");
    }
    if (trustedCa != null) {
      requireReadable(trustedCa, "CA certificates");
    }
    if (certChain != null) {
      requireReadable(certChain, "client certificate chain");
      requireReadable(key, "client private key");
    }
    SslContextBuilder b = SslContextBuilder.forClient();
    try {
      if (trustedCa != null) {
        b.trustManager(trustedCa.toFile());
      }
      if (certChain != null) {
        b.keyManager(certChain.toFile(), key.toFile());
      }
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("cannot set up TLS: " + rootMessage(e), e);
    }
    return build(b);
  }

  private static SslContext build(SslContextBuilder b) {
    try {
      return GrpcSslContexts.configure(b, SslProvider.JDK).build();
    } catch (IOException | RuntimeException e) {
      throw new IllegalArgumentException("cannot set up TLS: " + rootMessage(e), e);
    }
  }

  /** @throws IllegalArgumentException "{@code <what> <path> is not a readable file}" */
  public static void requireReadable(Path p, String what) {
    if (!Files.isRegularFile(p) || !Files.isReadable(p)) {
      throw new IllegalArgumentException(what + " " + p + " is not a readable file");
    }
  }

  private static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null && t.getCause() != t) {
      t = t.getCause();
    }
    return t == e ? String.valueOf(e.getMessage()) : e.getMessage() + ": " + t.getMessage();
  }
}
