package org.pserver.rpc;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.health.v1.HealthGrpc;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Refuses, with UNAUTHENTICATED, every call that does not carry the bearer token, before the call
 * reaches its service (the request message is never read). Health checks ({@code
 * grpc.health.v1.Health}) stay open: Kubernetes probes cannot send a header, and a health status
 * reveals nothing but "serving or not". Server reflection is not open.
 */
final class BearerTokenInterceptor implements ServerInterceptor {
  private static final Logger LOG = LoggerFactory.getLogger(BearerTokenInterceptor.class);
  /** Services reachable without the token. */
  static final Set<String> OPEN_SERVICES = Set.of(HealthGrpc.SERVICE_NAME);

  private final BearerToken token;
  private final AtomicLong refused = new AtomicLong();

  BearerTokenInterceptor(BearerToken token) {
    this.token = token;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if (OPEN_SERVICES.contains(call.getMethodDescriptor().getServiceName())) {
      return next.startCall(call, headers);
    }
    String header = headers.get(BearerToken.AUTHORIZATION);
    if (token.matches(header)) {
      return next.startCall(call, headers);
    }
    String why = header == null ? "missing bearer token" : "invalid bearer token";
    long n = refused.incrementAndGet();
    if (Long.bitCount(n) == 1) { // 1st, 2nd, 4th, 8th, ...: visible, but no log flood
      LOG.warn("refused {} from {}: {} ({} refused so far)", call.getMethodDescriptor().getFullMethodName(),
          call.getAttributes().get(io.grpc.Grpc.TRANSPORT_ATTR_REMOTE_ADDR), why, n);
    }
    call.close(Status.UNAUTHENTICATED.withDescription(why), new Metadata());
    return new ServerCall.Listener<>() {};
  }
}
