package org.pserver.rpc;

import io.grpc.BindableService;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.proto.PServerGrpc;
import org.pserver.service.Service;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A gRPC server around a {@link Service}: the {@code pserver.PServer} service, standard health
 * checking (SERVING while the service accepts writes, NOT_SERVING when fenced or shutting down)
 * and server reflection, both {@code grpc.reflection.v1} and, while grpc-java still ships it, the
 * older {@code grpc.reflection.v1alpha} that older grpcurl and other tools ask for.
 *
 * <p>Shutdown order: health goes NOT_SERVING, the server stops taking calls, reads waiting for
 * initialization end ({@link Service#endWaits()}), calls in flight finish, then {@link
 * Service#shutdown()} takes the final checkpoint; see {@link #shutdown}.
 */
public final class PServerServer implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(PServerServer.class);
  /** Sized for real models: a 100 MB parameter fits with room to spare. */
  public static final int DEFAULT_MAX_MESSAGE_BYTES = 512 << 20;

  private final Service service;
  private final Server server;
  private final HealthStatusManager health = new HealthStatusManager();
  private final ScheduledExecutorService healthRefresh =
      Executors.newSingleThreadScheduledExecutor(
          r -> {
            Thread t = new Thread(r, "pserver-health");
            t.setDaemon(true);
            return t;
          });

  private PServerServer(Service service, ServerBuilder<?> builder, int maxMessageBytes) {
    this.service = service;
    builder
        .maxInboundMessageSize(maxMessageBytes)
        .addService(new PServerGrpcService(service))
        .addService(health.getHealthService())
        .addService(ProtoReflectionServiceV1.newInstance());
    BindableService v1alpha = reflectionV1Alpha();
    if (v1alpha != null) {
      builder.addService(v1alpha);
    }
    this.server = builder.build();
  }

  /** grpc-java's deprecated v1alpha reflection service, or null once it is gone from the classpath. */
  private static BindableService reflectionV1Alpha() {
    try {
      return (BindableService) Class.forName("io.grpc.protobuf.services.ProtoReflectionService").getMethod("newInstance").invoke(null);
    } catch (ReflectiveOperationException | LinkageError | ClassCastException e) {
      LOG.debug("no grpc.reflection.v1alpha service: {}", e.toString());
      return null;
    }
  }

  /**
   * A server on {@code port} of every interface (0: any free port). With the system property
   * {@value DropReplies#PROPERTY} set (tests only) it drops that fraction of push replies.
   */
  public static PServerServer netty(Service service, int port, int maxMessageBytes) {
    return netty(service, port, maxMessageBytes, b -> {});
  }

  /**
   * As {@link #netty(Service, int, int)}, with {@code customizer} applied to the builder before the
   * server is built: TLS ({@link ServerSecurity#applyTo}), interceptors, transport limits. Trap:
   * interceptors added through the builder run in the reverse order of adding (the last added runs
   * first), for every service on the server, health and reflection included.
   */
  public static PServerServer netty(
      Service service, int port, int maxMessageBytes, Consumer<? super NettyServerBuilder> customizer) {
    NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress(port));
    customizer.accept(b);
    double drop = Double.parseDouble(System.getProperty(DropReplies.PROPERTY, "0"));
    if (drop > 0) {
      LOG.warn("FAULT INJECTION: dropping {}% of SendGrads replies after applying them ({})", drop * 100, DropReplies.PROPERTY);
      b.intercept(new DropReplies(PServerGrpc.getSendGradsMethod().getFullMethodName(), drop, System.nanoTime()));
    }
    return new PServerServer(service, b, maxMessageBytes);
  }

  /** A server on a caller-made builder (in-process transports in tests, TLS, interceptors). */
  public static PServerServer on(Service service, ServerBuilder<?> builder, int maxMessageBytes) {
    return new PServerServer(service, builder, maxMessageBytes);
  }

  public PServerServer start() throws IOException {
    server.start();
    refreshHealth();
    healthRefresh.scheduleWithFixedDelay(this::refreshHealth, 200, 200, TimeUnit.MILLISECONDS);
    return this;
  }

  /**
   * The server's health statuses, e.g. to serve them on a second, plaintext port for Kubernetes
   * probes, or to add statuses of one's own. Trap: the server itself sets {@code ""} and {@code
   * pserver.PServer} every 200 ms, so values set there are overwritten; at shutdown every status
   * turns NOT_SERVING.
   */
  public HealthStatusManager health() {
    return health;
  }

  /** The bound port (useful after asking for port 0). */
  public int port() {
    return server.getPort();
  }

  private void refreshHealth() {
    ServingStatus s = service.status().serving() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    health.setStatus("", s);
    health.setStatus(PServerGrpc.SERVICE_NAME, s);
  }

  /**
   * Graceful stop: NOT_SERVING, no new calls, waits for initialization end, in-flight calls finish
   * (up to {@code grace}), then the service's final checkpoint. Returns once everything has
   * stopped.
   *
   * @return the final checkpoint, or null if none was due (see {@link Service#shutdown()})
   * @throws org.pserver.service.PServerException if the final checkpoint failed; everything has
   *     stopped all the same
   */
  public CheckpointMeta shutdown(Duration grace) {
    healthRefresh.shutdownNow();
    health.enterTerminalState();
    server.shutdown();
    service.endWaits();
    try {
      if (!server.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
        LOG.warn("calls still running after {}: cancelling them", grace);
        server.shutdownNow();
        server.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      server.shutdownNow();
    }
    return service.shutdown();
  }

  /**
   * Stops at once: calls in flight are cancelled and no final checkpoint is taken. This is what a
   * crash looks like to clients; useful in tests and when the process must not linger (e.g. the
   * pserver lost its index to another process).
   */
  public void abort() {
    healthRefresh.shutdownNow();
    server.shutdownNow();
    try {
      server.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Blocks until the server has terminated. */
  public void awaitTermination() throws InterruptedException {
    server.awaitTermination();
  }

  @Override
  public void close() {
    shutdown(Duration.ofSeconds(10));
  }
}
