package org.pserver.testing;

import io.grpc.ServerInterceptor;
import io.grpc.netty.NettyServerBuilder;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;
import org.pserver.rpc.PServerServer;
import org.pserver.service.Service;

/**
 * A standalone pserver inside the test JVM on a fixed loopback port, which a test can crash
 * ({@link #crash()}: no drain, no final checkpoint) and start again, empty or from its checkpoint.
 */
public final class LocalPserver implements AutoCloseable {
  public final int index;
  public final int port;
  private final Path dir;
  private final ServerInterceptor interceptor;
  public Service service;
  public PServerServer server;

  public LocalPserver(int index, Path dir, ServerInterceptor interceptor) throws Exception {
    this.index = index;
    this.port = DaemonProcess.freePort();
    this.dir = dir.resolve("ps" + index);
    this.interceptor = interceptor;
    start(false);
  }

  /** Starts serving: from the last checkpoint when {@code recover}, else empty. */
  public void start(boolean recover) throws Exception {
    CheckpointManager cm = new CheckpointManager(dir, index, new LocalKVStore(dir), Kernels.get(), Duration.ofSeconds(3));
    Checkpoint cp = recover ? cm.recover().orElse(null) : null;
    service = new Service(new Service.Options(index, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), cm, cp, Service.WriteGate.OPEN);
    NettyServerBuilder b = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", port));
    if (interceptor != null) {
      b.intercept(interceptor);
    }
    server = PServerServer.on(service, b, PServerServer.DEFAULT_MAX_MESSAGE_BYTES).start();
  }

  /** Stops like a crash: calls cancelled, no final checkpoint. */
  public void crash() {
    server.abort();
  }

  public String address() {
    return "127.0.0.1:" + port;
  }

  @Override
  public void close() {
    server.abort();
  }
}
