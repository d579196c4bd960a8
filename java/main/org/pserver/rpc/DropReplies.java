package org.pserver.rpc;

import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Fault injection, for tests only: for a fraction of the calls to one method the server does all
 * its work, then the reply is thrown away and the call fails with UNAVAILABLE, as a reply lost in
 * the network looks to the client. A daemon turns it on for pushes with the system property
 * {@value #PROPERTY} (a rate such as {@code 0.05}); it is off otherwise.
 */
public final class DropReplies implements ServerInterceptor {
  /** The system property that makes {@link PServerServer#netty} drop push replies at that rate. */
  public static final String PROPERTY = "pserver.fault.dropPushReplies";

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
