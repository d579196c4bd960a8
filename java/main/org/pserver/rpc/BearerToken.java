package org.pserver.rpc;

import io.grpc.Metadata;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * A shared secret that every RPC carries as {@code authorization: Bearer <token>}: the server
 * side ({@link ServerSecurity}) checks it, the client side ({@link ClientSecurity}) sends it.
 *
 * <p>A token is 16 to 4096 visible ASCII characters (no spaces or control characters, as in an
 * HTTP header). {@link #fromFile} trims the surrounding white space, so a file ending in a newline
 * (as {@code echo} and Kubernetes Secrets made from literals write them) works.
 *
 * <p>Traps: without TLS the token crosses the network in clear text, readable by anyone on the
 * path; a token on the command line is visible in the process list (prefer the environment or a
 * file). {@link #toString()} never shows the token.
 */
public final class BearerToken {
  /** The {@code authorization} request header. */
  public static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  static final String SCHEME = "Bearer ";
  private static final int MIN_LENGTH = 16;
  private static final int MAX_LENGTH = 4096;

  private final String token;
  private final byte[] digest;

  private BearerToken(String token) {
    this.token = token;
    this.digest = sha256(token);
  }

  /**
   * The token {@code token}.
   *
   * @throws IllegalArgumentException if it is shorter than 16 or longer than 4096 characters, or
   *     has a character that is not visible ASCII
   */
  public static BearerToken of(String token) {
    if (token == null || token.length() < MIN_LENGTH || token.length() > MAX_LENGTH) {
      throw new IllegalArgumentException(
          "a bearer token must have " + MIN_LENGTH + " to " + MAX_LENGTH + " characters");
    }
    for (int i = 0; i < token.length(); i++) {
      char c = token.charAt(i);
      if (c <= ' ' || c > '~') {
        throw new IllegalArgumentException(
            "a bearer token may hold only visible ASCII characters (found code " + (int) c + " at " + i + ")");
      }
    }
    return new BearerToken(token);
  }

  /** The token in {@code file} (UTF-8), without surrounding white space. */
  public static BearerToken fromFile(Path file) throws IOException {
    return of(Files.readString(file, StandardCharsets.UTF_8).strip());
  }

  /** The header value to send: {@code Bearer <token>}. */
  public String headerValue() {
    return SCHEME + token;
  }

  /**
   * Whether {@code header} (an {@code authorization} value, may be null) carries this token. The
   * comparison takes the same time wherever the values differ.
   */
  public boolean matches(String header) {
    if (header == null || !header.regionMatches(true, 0, SCHEME, 0, SCHEME.length())) {
      return false;
    }
    return MessageDigest.isEqual(digest, sha256(header.substring(SCHEME.length()).strip()));
  }

  private static byte[] sha256(String s) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is missing from this JVM", e);
    }
  }

  @Override
  public String toString() {
    return "BearerToken[redacted]";
  }
}
