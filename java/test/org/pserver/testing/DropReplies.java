package org.pserver.testing;

import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A fault-injecting server interceptor for tests: for a fraction of the calls to one method it lets
 * the server do all its work, then throws the reply away and fails the call with UNAVAILABLE, as a
 * lost network reply would look to the client.
 */
public final class DropReplies implements ServerInterceptor {
  private final String method;
  private final double rate;
  private final SplittableRandom random;
  private final AtomicInteger dropped = new AtomicInteger();
  private final AtomicInteger calls = new AtomicInteger();

  /** Drops replies of {@code fullMethodName} (e.g. {@code pserver.PServer/SendGrads}) at {@code rate}. */
  public DropReplies(String fullMethodName, double rate, long seed) {
    this.method = fullMethodName;
    this.rate = rate;
    this.random = new SplittableRandom(seed);
  }

  public int dropped() {
    return dropped.get();
  }

  public int calls() {
    return calls.get();
  }

  private synchronized boolean drop() {
    return random.nextDouble() < rate;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    if (!call.getMethodDescriptor().getFullMethodName().equals(method)) {
      return next.startCall(call, headers);
    }
    calls.incrementAndGet();
    boolean lose = drop();
    return next.startCall(new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
      @Override
      public void sendMessage(R message) {
        if (!lose) {
          super.sendMessage(message);
        }
      }

      @Override
      public void close(Status status, Metadata trailers) {
        if (lose && status.isOk()) {
          dropped.incrementAndGet();
          super.close(Status.UNAVAILABLE.withDescription("reply dropped by the test"), new Metadata());
        } else {
          super.close(status, trailers);
        }
      }
    }, headers);
  }
}
