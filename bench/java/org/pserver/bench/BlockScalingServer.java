package org.pserver.bench;

import io.grpc.ForwardingServerCall;
import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.time.Duration;
import org.pserver.kernels.Kernels;
import org.pserver.rpc.PServerServer;
import org.pserver.service.Service;

/**
 * One pserver process of {@code bench/blocks.sh}: a standalone {@link Service} (no etcd, no
 * checkpoints) behind {@link PServerServer} with the same services, settings and message limit as
 * {@code pserver serve}, except that it listens on 127.0.0.1 only (on a free port) instead of
 * every interface, and that a timing interceptor reports in each call's trailers how long the
 * request took to arrive ({@link #RECEIVE}: call start to the parsed request) and how long the
 * pserver worked on it ({@link #WORK}: the handler, from the client's half-close to the reply's
 * close; for a push, the checks and the Adam updates of every block; for a pull, copying the
 * weights into gRPC's send buffers).
 *
 * <p>Usage: {@code BlockScalingServer <index>}. Prints {@code READY port=P kernels=K} once
 * listening; exits when stdin closes, so it never outlives the bench that started it.
 */
public final class BlockScalingServer {
  static final Metadata.Key<String> RECEIVE = Metadata.Key.of("bench-receive-nanos", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> WORK = Metadata.Key.of("bench-work-nanos", Metadata.ASCII_STRING_MARSHALLER);

  private BlockScalingServer() {}

  /** Adds {@link #RECEIVE} and {@link #WORK} to every call's trailers. */
  static final class Timing implements ServerInterceptor {
    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
      long start = System.nanoTime();
      long[] at = new long[2]; // request parsed, half-close (gRPC calls a call's callbacks one at a time)
      ServerCall<Q, R> timed = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
        @Override
        public void close(Status status, Metadata trailers) {
          long now = System.nanoTime();
          if (at[0] != 0) {
            trailers.put(RECEIVE, Long.toString(at[0] - start));
          }
          if (at[1] != 0) {
            trailers.put(WORK, Long.toString(now - at[1]));
          }
          super.close(status, trailers);
        }
      };
      return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(next.startCall(timed, headers)) {
        @Override
        public void onMessage(Q message) {
          if (at[0] == 0) {
            at[0] = System.nanoTime();
          }
          super.onMessage(message);
        }

        @Override
        public void onHalfClose() {
          at[1] = System.nanoTime();
          super.onHalfClose();
        }
      };
    }
  }

  public static void main(String[] args) throws Exception {
    int index = Integer.parseInt(args[0]);
    Service service = new Service(
        new Service.Options(index, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)),
        null, null, Service.WriteGate.OPEN);
    int max = PServerServer.DEFAULT_MAX_MESSAGE_BYTES;
    NettyServerBuilder builder = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0));
    builder.intercept(new Timing());
    PServerServer server = PServerServer.on(service, builder, max).start();
    System.out.println("READY port=" + server.port() + " kernels=" + Kernels.get().name());
    System.out.flush();
    while (System.in.read() >= 0) {
      // until the bench closes our stdin or exits
    }
    server.abort();
    System.exit(0);
  }
}
