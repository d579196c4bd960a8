package org.pserver.rpc;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import org.pserver.checkpoint.Checkpoint;
import org.pserver.checkpoint.CheckpointManager;
import org.pserver.cluster.LocalKVStore;
import org.pserver.kernels.Kernels;
import org.pserver.proto.ElementType;
import org.pserver.proto.Gradient;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.Parameter;
import org.pserver.proto.ParameterWithConfig;
import org.pserver.proto.paddle.OptimizerConfig;
import org.pserver.proto.paddle.SGDConfig;
import org.pserver.proto.paddle.ConstLrConfig;
import org.pserver.service.Service;

/** A pserver on an in-process transport with a blocking stub, for tests. */
final class InProcessPServer implements AutoCloseable {
  final Service service;
  final PServerServer server;
  final ManagedChannel channel;
  final PServerGrpc.PServerBlockingStub stub;
  final CheckpointManager checkpoints;

  InProcessPServer(Path checkpointDir, Service.WriteGate gate, Checkpoint restored, int maxMessageBytes) throws IOException {
    String name = InProcessServerBuilder.generateName();
    checkpoints =
        checkpointDir == null
            ? null
            : new CheckpointManager(checkpointDir, 0, new LocalKVStore(checkpointDir), Kernels.get(), Duration.ofSeconds(3));
    service =
        new Service(
            new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)),
            checkpoints, restored, gate);
    server = PServerServer.on(service, InProcessServerBuilder.forName(name).directExecutor(), maxMessageBytes).start();
    channel = InProcessChannelBuilder.forName(name).directExecutor().maxInboundMessageSize(maxMessageBytes).build();
    stub = PServerGrpc.newBlockingStub(channel);
  }

  InProcessPServer(Path checkpointDir) throws IOException {
    this(checkpointDir, Service.WriteGate.OPEN, null, PServerServer.DEFAULT_MAX_MESSAGE_BYTES);
  }

  @Override
  public void close() {
    channel.shutdownNow();
    server.shutdown(Duration.ofSeconds(5));
  }

  // --- message helpers ---------------------------------------------------------------------------

  static ByteString f32(float... v) {
    ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) {
      b.putFloat(x);
    }
    return ByteString.copyFrom(b.array());
  }

  static ByteString i64(long... v) {
    ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long x : v) {
      b.putLong(x);
    }
    return ByteString.copyFrom(b.array());
  }

  static float[] floats(ByteString s) {
    ByteBuffer b = s.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    float[] v = new float[b.remaining() / 4];
    for (int i = 0; i < v.length; i++) {
      v[i] = b.getFloat();
    }
    return v;
  }

  static long[] longs(ByteString s) {
    ByteBuffer b = s.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    long[] v = new long[b.remaining() / 8];
    for (int i = 0; i < v.length; i++) {
      v[i] = b.getLong();
    }
    return v;
  }

  /** SGD with a constant learning rate, optional momentum. */
  static ByteString sgd(double lr, double momentum) {
    return OptimizerConfig.newBuilder()
        .setOptimizer(OptimizerConfig.Optimizer.SGD)
        .setSgd(SGDConfig.newBuilder().setMomentum(momentum))
        .setLrPolicy(OptimizerConfig.LrPolicy.Const)
        .setConstLr(ConstLrConfig.newBuilder().setLearningRate(lr))
        .build()
        .toByteString();
  }

  static ParameterWithConfig param(String name, ElementType type, ByteString content, ByteString config) {
    return ParameterWithConfig.newBuilder()
        .setParam(Parameter.newBuilder().setName(name).setElementType(type).setContent(content))
        .setConfig(config)
        .build();
  }

  static Gradient grad(String name, ElementType type, ByteString content) {
    return Gradient.newBuilder().setName(name).setElementType(type).setContent(content).build();
  }
}
