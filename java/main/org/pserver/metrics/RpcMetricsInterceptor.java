package org.pserver.metrics;

import io.grpc.ForwardingServerCall.SimpleForwardingServerCall;
import io.grpc.ForwardingServerCallListener.SimpleForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Reports each server call once, when its status is decided: service, bare method name, status
 * code name and the nanoseconds since the call started. A call the client cancels before a status
 * was sent counts as {@code CANCELLED}. The report happens before the status goes out, so a client
 * that has seen a reply can already see it counted.
 */
final class RpcMetricsInterceptor implements ServerInterceptor {
  /** Receives one report per call. Must not throw. */
  @FunctionalInterface
  interface Sink {
    void finished(String service, String method, String code, long nanos);
  }

  private final Sink sink;

  RpcMetricsInterceptor(Sink sink) {
    this.sink = sink;
  }

  @Override
  public <Q, R> ServerCall.Listener<Q> interceptCall(
      ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
    MethodDescriptor<Q, R> md = call.getMethodDescriptor();
    String service = String.valueOf(md.getServiceName());
    String method = String.valueOf(md.getBareMethodName());
    long start = System.nanoTime();
    AtomicBoolean reported = new AtomicBoolean();
    Runnable cancelled = () -> report(reported, service, method, Status.Code.CANCELLED, start);
    ServerCall<Q, R> counted =
        new SimpleForwardingServerCall<>(call) {
          @Override
          public void close(Status status, Metadata trailers) {
            report(reported, service, method, status.getCode(), start);
            super.close(status, trailers);
          }
        };
    return new SimpleForwardingServerCallListener<>(next.startCall(counted, headers)) {
      @Override
      public void onCancel() {
        cancelled.run();
        super.onCancel();
      }
    };
  }

  private void report(AtomicBoolean reported, String service, String method, Status.Code code, long start) {
    if (reported.compareAndSet(false, true)) {
      sink.finished(service, method, code.name(), System.nanoTime() - start);
    }
  }
}
