package org.pserver.rpc;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.Status;
import java.util.function.Consumer;
import org.pserver.service.PServerException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A unary call handler that owns its request and releases it deterministically: the body runs
 * when the client half-closes, and the request is released ({@code release}) as soon as the body
 * returns or throws, before the reply goes out; a request that never reaches the body (the call
 * was cancelled, the client sent two messages) is released too. For requests whose byte views
 * point into network buffers ({@link Requests.Received}), that bounds how long gRPC's buffers are
 * held to the service call itself.
 *
 * <p>{@link PServerException}s map onto gRPC status codes as in {@link PServerGrpcService}; any
 * other exception is INTERNAL and logged. gRPC calls the listener one callback at a time.
 */
final class UnaryHandler<Q, R> implements ServerCallHandler<Q, R> {
  private static final Logger LOG = LoggerFactory.getLogger(UnaryHandler.class);

  /** What the call does; runs inside the call's gRPC context (deadline, cancellation). */
  @FunctionalInterface
  interface Body<Q, R> {
    R apply(Q request);
  }

  private final Body<Q, R> body;
  private final Consumer<? super Q> release;

  UnaryHandler(Body<Q, R> body, Consumer<? super Q> release) {
    this.body = body;
    this.release = release;
  }

  /** A handler for requests that hold nothing. */
  static <Q, R> UnaryHandler<Q, R> plain(Body<Q, R> body) {
    return new UnaryHandler<>(body, q -> {});
  }

  @Override
  public ServerCall.Listener<Q> startCall(ServerCall<Q, R> call, Metadata headers) {
    // Two, so that a client sending a second message is noticed (and that message released).
    call.request(2);
    return new Listener(call);
  }

  private final class Listener extends ServerCall.Listener<Q> {
    private final ServerCall<Q, R> call;
    private Q request;
    private boolean done;

    Listener(ServerCall<Q, R> call) {
      this.call = call;
    }

    @Override
    public void onMessage(Q message) {
      if (done || request != null) {
        release.accept(message);
        if (!done) {
          done = true;
          drop();
          close(Status.INTERNAL.withDescription("Too many requests"));
        }
        return;
      }
      request = message;
    }

    @Override
    public void onHalfClose() {
      if (done) {
        return;
      }
      done = true;
      Q q = request;
      request = null;
      if (q == null) {
        close(Status.INTERNAL.withDescription("Half-closed without a request"));
        return;
      }
      R reply;
      try {
        reply = body.apply(q);
      } catch (PServerException e) {
        close(PServerGrpcService.status(e));
        return;
      } catch (RuntimeException e) {
        LOG.error("internal error", e);
        close(Status.INTERNAL.withDescription(String.valueOf(e)));
        return;
      } finally {
        release.accept(q);
      }
      try {
        call.sendHeaders(new Metadata());
        call.sendMessage(reply);
        call.close(Status.OK, new Metadata());
      } catch (IllegalStateException e) {
        // sendMessage failed and gRPC closed the call with the reason itself.
        LOG.debug("reply not sent: {}", e.toString());
      }
    }

    @Override
    public void onCancel() {
      done = true;
      drop();
    }

    @Override
    public void onComplete() {
      drop();
    }

    private void drop() {
      Q q = request;
      request = null;
      if (q != null) {
        release.accept(q);
      }
    }

    private void close(Status s) {
      try {
        call.close(s, new Metadata());
      } catch (IllegalStateException e) {
        LOG.debug("call already closed: {}", e.toString());
      }
    }
  }
}
