package org.pserver.cluster;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.common.exception.EtcdException;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusException;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * FOR INTERNAL USE ONLY. How this package talks to jetcd: client construction, bounded waits, and
 * error translation into {@link IOException}s that say what failed and where.
 *
 * <p>Why every unary call carries a gRPC deadline: jetcd 0.8.5 stubs wait for the channel to be
 * ready, with no deadline, so a call made while etcd is down would otherwise be parked and sent
 * minutes later when etcd comes back. With a deadline it fails after {@code rpcTimeout} (the
 * pserver's dial timeout) on both sides, and nothing stale is ever sent. Watches (long-lived
 * streams) get no deadline; the one-shot lease keep-alive stream gets its own.
 *
 * <p>jetcd's own retries are switched off ({@code retryMaxAttempts(0)}): every retry in this
 * package is an explicit, logged loop with capped backoff, and a transaction whose outcome is
 * unknown is never replayed behind the caller's back.
 */
final class Etcd {
  static final String KEEP_ALIVE_METHOD = "etcdserverpb.Lease/LeaseKeepAlive";
  private static final long GRACE_NANOS = TimeUnit.MILLISECONDS.toNanos(250);

  private Etcd() {}

  /**
   * A jetcd client for comma-separated {@code endpoints} ({@code http://host:port} or {@code
   * host:port}). Does not connect yet: jetcd dials on the first call.
   */
  static Client connect(String endpoints, Duration rpcTimeout, Duration keepAliveTimeout) {
    return connect(endpoints, rpcTimeout, keepAliveTimeout, EtcdSecurity.NONE);
  }

  /**
   * As above, with TLS and authentication to etcd. TLS is on when {@code security} asks for it or
   * the endpoints are {@code https://} (then, without a CA in {@code security}, the JDK's trust
   * store verifies etcd); scheme-less endpoints follow {@code security}.
   *
   * @throws IllegalArgumentException for a bad endpoint list, an explicit {@code http://} endpoint
   *     while TLS is on, or an unusable certificate or key file
   */
  static Client connect(String endpoints, Duration rpcTimeout, Duration keepAliveTimeout, EtcdSecurity security) {
    URI[] uris = parseEndpoints(endpoints);
    boolean https = "https".equals(uris[0].getScheme());
    if (security.tls() && !https && endpoints.contains("http://")) {
      throw new IllegalArgumentException(
          "etcd endpoints '" + endpoints + "' are plaintext http:// but TLS to etcd is configured"
              + " (a CA or client certificate); use https:// endpoints");
    }
    if (security.tls() && !https) {
      uris = withScheme(uris, "https");
    }
    io.etcd.jetcd.ClientBuilder b = Client.builder()
        .endpoints(uris)
        .connectTimeout(rpcTimeout)
        .retryMaxAttempts(0)
        .waitForReady(true)
        .interceptor(new Deadlines(rpcTimeout, keepAliveTimeout));
    try {
      security.applyTo(b);
      if (https && !security.tls()) {
        b.sslContext(org.pserver.tls.TlsContexts.forClient(null, null, null));
      }
    } catch (IOException e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
    return b.build();
  }

  private static URI[] withScheme(URI[] uris, String scheme) {
    URI[] out = new URI[uris.length];
    for (int i = 0; i < uris.length; i++) {
      out[i] = URI.create(scheme + "://" + uris[i].getHost() + ":" + uris[i].getPort());
    }
    return out;
  }

  /**
   * Splits and validates an endpoint list: {@code http://host:port}, {@code https://host:port}
   * (all endpoints with the same scheme), or a scheme-less {@code host:port}, which means http
   * unless {@link #connect} is given TLS settings.
   */
  static URI[] parseEndpoints(String endpoints) {
    if (endpoints == null || endpoints.isBlank()) {
      throw new IllegalArgumentException("no etcd endpoints given");
    }
    List<URI> uris = new ArrayList<>();
    String scheme = null; // of the endpoints that name one; all must agree
    for (String e : endpoints.split(",")) {
      String s = e.strip();
      if (s.isEmpty()) {
        continue;
      }
      URI u;
      try {
        u = URI.create(s.contains("://") ? s : "http://" + s);
      } catch (IllegalArgumentException ex) {
        throw new IllegalArgumentException("bad etcd endpoint '" + s + "': " + ex.getMessage(), ex);
      }
      if (u.getHost() == null || u.getPort() < 0) {
        throw new IllegalArgumentException(
            "bad etcd endpoint '" + s + "': expected http://host:port, https://host:port or host:port");
      }
      if (s.contains("://")) {
        if (!"http".equals(u.getScheme()) && !"https".equals(u.getScheme())) {
          throw new IllegalArgumentException(
              "bad etcd endpoint '" + s + "': expected http://host:port, https://host:port or host:port");
        }
        if (scheme != null && !scheme.equals(u.getScheme())) {
          throw new IllegalArgumentException(
              "etcd endpoints '" + endpoints + "' mix http:// and https://: use one scheme for all");
        }
        scheme = u.getScheme();
      }
      uris.add(u);
    }
    if (uris.isEmpty()) {
      throw new IllegalArgumentException("no etcd endpoints in '" + endpoints + "'");
    }
    URI[] out = uris.toArray(new URI[0]);
    return scheme == null ? out : withScheme(out, scheme);
  }

  static ByteSequence bytes(String s) {
    return ByteSequence.from(s, StandardCharsets.UTF_8);
  }

  static String string(ByteSequence b) {
    return b.toString(StandardCharsets.UTF_8);
  }

  /** The first key-value of a get, or null. */
  static KeyValue first(GetResponse r) {
    return r.getKvs().isEmpty() ? null : r.getKvs().get(0);
  }

  /** The first key-value of the {@code i}-th get in a transaction's executed branch, or null. */
  static KeyValue txnGet(TxnResponse r, int i) {
    List<GetResponse> gets = r.getGetResponses();
    return gets.size() <= i ? null : first(gets.get(i));
  }

  /**
   * Waits for {@code f} at most {@code timeout} (plus a 250 ms grace).
   *
   * @throws LeaseNotFoundException if etcd says the lease does not exist
   * @throws IOException on timeout or any other failure, naming {@code what} and the endpoints
   * @throws InterruptedException if interrupted (the call is cancelled locally)
   */
  static <T> T await(CompletableFuture<T> f, Duration timeout, String what, String endpoints)
      throws IOException, InterruptedException {
    try {
      // A little grace, so that the call's own gRPC deadline (the same timeout) fires first and
      // cancels the call on the server too.
      return f.get(timeout.toNanos() + GRACE_NANOS, TimeUnit.NANOSECONDS);
    } catch (TimeoutException e) {
      f.cancel(false);
      throw new IOException(
          what + ": no answer from etcd at " + endpoints + " within " + format(timeout), e);
    } catch (InterruptedException e) {
      f.cancel(false);
      throw e;
    } catch (ExecutionException | CompletionException | CancellationException e) {
      throw translate(e, what, endpoints, timeout);
    }
  }

  /** {@link #await} for callers that cannot throw {@link InterruptedException}. */
  static <T> T awaitIo(CompletableFuture<T> f, Duration timeout, String what, String endpoints)
      throws IOException {
    try {
      return await(f, timeout, what, endpoints);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      InterruptedIOException io = new InterruptedIOException(what + ": interrupted");
      io.initCause(e);
      throw io;
    }
  }

  /**
   * {@link #awaitIo} for cleanup (revoking a lease, deleting a lock key) that must also run when
   * the thread was interrupted: the interrupt flag is cleared for the call and restored after it.
   */
  static <T> T awaitCleanup(CompletableFuture<T> f, Duration timeout, String what, String endpoints)
      throws IOException {
    boolean interrupted = Thread.interrupted();
    try {
      return awaitIo(f, timeout, what, endpoints);
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  /** Turns a jetcd failure into an IOException whose message is enough on its own. */
  static IOException translate(Throwable t, String what, String endpoints, Duration timeout) {
    Throwable c = unwrap(t);
    if (c instanceof IOException io && (c instanceof LeaseNotFoundException)) {
      return io;
    }
    if (isLeaseNotFound(c)) {
      return new LeaseNotFoundException(what + ": etcd: requested lease not found", c);
    }
    if (c instanceof TimeoutException) {
      return new IOException(what + ": no answer from etcd at " + endpoints + " within " + format(timeout), c);
    }
    Status.Code code = code(c);
    String detail = describe(c);
    if (code == Status.Code.DEADLINE_EXCEEDED) {
      String why = detail.contains("Connection refused") ? ": connection refused" : " (unreachable or overloaded)";
      return new IOException(
          what + ": no answer from etcd at " + endpoints + " within " + format(timeout) + why, c);
    }
    if (code == Status.Code.UNAVAILABLE) {
      return new IOException(what + ": etcd at " + endpoints + " is unavailable: " + shorten(detail), c);
    }
    if (code != null && code != Status.Code.UNKNOWN) {
      return new IOException(what + ": etcd at " + endpoints + " answered " + code + ": " + shorten(detail), c);
    }
    return new IOException(what + ": " + shorten(String.valueOf(c)), c);
  }

  /** The gRPC status code behind a jetcd or gRPC failure, or null. */
  static Status.Code code(Throwable t) {
    Throwable c = unwrap(t);
    if (c instanceof EtcdException ee) {
      return Status.Code.valueOf(ee.getErrorCode().name());
    }
    Status s = Status.fromThrowable(c);
    return s.getCode() == Status.Code.UNKNOWN && !(c instanceof StatusRuntimeException || c instanceof StatusException)
        ? null
        : s.getCode();
  }

  private static String describe(Throwable c) {
    if (c instanceof EtcdException) {
      return String.valueOf(c.getMessage());
    }
    Status s = Status.fromThrowable(c);
    return s.getDescription() != null ? s.getDescription() : String.valueOf(c.getMessage());
  }

  /** First line, at most 200 characters: gRPC descriptions can carry whole stack traces. */
  private static String shorten(String s) {
    int nl = s.indexOf('\n');
    String line = nl >= 0 ? s.substring(0, nl) : s;
    return line.length() > 200 ? line.substring(0, 200) + "..." : line;
  }

  static Throwable unwrap(Throwable t) {
    Throwable c = t;
    while ((c instanceof ExecutionException || c instanceof CompletionException)
        && c.getCause() != null) {
      c = c.getCause();
    }
    return c;
  }

  static boolean isLeaseNotFound(Throwable t) {
    Throwable c = unwrap(t);
    if (c instanceof LeaseNotFoundException) {
      return true;
    }
    return code(c) == Status.Code.NOT_FOUND && describe(c).contains("lease not found");
  }

  /** "250 ms", "1.5 s", "2 min". */
  static String format(Duration d) {
    long ms = d.toMillis();
    if (ms < 1000) {
      return ms + " ms";
    }
    if (ms < 120_000) {
      return (ms % 1000 == 0) ? (ms / 1000) + " s" : String.format("%.1f s", ms / 1000.0);
    }
    return (ms / 60_000) + " min";
  }

  /** A value from etcd made safe and short for a log line or an error message. */
  static String quote(String v) {
    if (v == null) {
      return "(none)";
    }
    StringBuilder b = new StringBuilder("'");
    int n = Math.min(v.length(), 80);
    for (int i = 0; i < n; i++) {
      char c = v.charAt(i);
      if (c < ' ' || c == 0x7f) {
        b.append(String.format("\\x%02x", (int) c));
      } else {
        b.append(c);
      }
    }
    if (v.length() > n) {
      b.append("...(").append(v.length()).append(" chars)");
    }
    return b.append('\'').toString();
  }

  /** Daemon threads named {@code prefix-<n>}. */
  static ThreadFactory threads(String prefix) {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }

  /** Puts a deadline on every unary call and on the one-shot keep-alive stream. */
  private static final class Deadlines implements ClientInterceptor {
    private final long rpcNanos;
    private final long keepAliveNanos;

    Deadlines(Duration rpc, Duration keepAlive) {
      this.rpcNanos = rpc.toNanos();
      this.keepAliveNanos = keepAlive.toNanos();
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      if (options.getDeadline() == null) {
        if (method.getType() == MethodDescriptor.MethodType.UNARY) {
          options = options.withDeadlineAfter(rpcNanos, TimeUnit.NANOSECONDS);
        } else if (KEEP_ALIVE_METHOD.equals(method.getFullMethodName())) {
          // Only keepAliveOnce uses this stream here (never jetcd's keepAlive()), so it is short.
          options = options.withDeadlineAfter(keepAliveNanos, TimeUnit.NANOSECONDS);
        }
      }
      return next.newCall(method, options);
    }
  }

  /** etcd does not know the lease (it expired or was revoked). */
  static final class LeaseNotFoundException extends IOException {
    private static final long serialVersionUID = 1L;

    LeaseNotFoundException(String message, Throwable cause) {
      super(message, cause);
    }
  }
}
