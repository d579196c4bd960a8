package org.pserver.rpc;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.grpc.Context;
import io.grpc.BindableService;
import io.grpc.Deadline;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.function.Supplier;
import org.pserver.ElementType;
import org.pserver.checkpoint.CheckpointMeta;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.FinishInitParamsResponse;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.InitParamResponse;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.SendGradResponse;
import org.pserver.proto.SendGradsRequest;
import org.pserver.proto.SendGradsResponse;
import org.pserver.proto.StatusRequest;
import org.pserver.proto.StatusResponse;
import org.pserver.service.Gradient;
import org.pserver.service.PServerException;
import org.pserver.service.Parameter;
import org.pserver.service.ParameterWithConfig;
import org.pserver.service.Service;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Adapts the {@code pserver.PServer} wire contract to {@link Service}: converts messages, maps
 * {@link PServerException} codes onto gRPC status codes one to one, and passes the call's
 * deadline. Holds no state and makes no decisions of its own.
 *
 * <p>{@link #bindService()} puts the bulk-data methods on their copy-avoiding paths ({@link
 * FastPaths}); the methods below still serve them when those are off (tests and benchmarks compare
 * the two) and always serve the other RPCs.
 */
final class PServerGrpcService implements PServerGrpc.AsyncService, BindableService {
  private static final Logger LOG = LoggerFactory.getLogger(PServerGrpcService.class);

  private final Service service;
  private final boolean fastPaths;

  PServerGrpcService(Service service) {
    this(service, true);
  }

  /** With {@code fastPaths} false, every method uses the generated protobuf marshallers. */
  PServerGrpcService(Service service, boolean fastPaths) {
    this.service = service;
    this.fastPaths = fastPaths;
  }

  @Override
  public ServerServiceDefinition bindService() {
    ServerServiceDefinition generated = PServerGrpc.bindService(this);
    return fastPaths ? FastPaths.bind(generated, service, ReceiveBuffers.SHARED) : generated;
  }

  @Override
  public void initParam(
      org.pserver.proto.ParameterWithConfig req, StreamObserver<InitParamResponse> out) {
    call(out, () -> {
      org.pserver.proto.Parameter p = req.getParam();
      service.initParam(
          new ParameterWithConfig(
              new Parameter(p.getName(), type(p.getElementTypeValue()), view(p.getContent())),
              req.getConfig().toByteArray()));
      return InitParamResponse.getDefaultInstance();
    });
  }

  @Override
  public void finishInitParams(FinishInitParamsRequest req, StreamObserver<FinishInitParamsResponse> out) {
    call(out, () -> {
      service.finishInitParams();
      return FinishInitParamsResponse.getDefaultInstance();
    });
  }

  @Override
  public void sendGrad(org.pserver.proto.Gradient g, StreamObserver<SendGradResponse> out) {
    call(out, () -> {
      boolean dup = service.sendGrad(gradient(g), g.getTrainerId(), g.getSeq(), g.getLowWatermark());
      return SendGradResponse.newBuilder().setDuplicate(dup).build();
    });
  }

  @Override
  public void sendGrads(SendGradsRequest req, StreamObserver<SendGradsResponse> out) {
    call(out, () -> {
      List<Gradient> grads = new ArrayList<>(req.getGradsCount());
      for (org.pserver.proto.Gradient g : req.getGradsList()) {
        grads.add(gradient(g));
      }
      boolean dup = service.sendGrads(grads, req.getTrainerId(), req.getSeq(), req.getLowWatermark());
      return SendGradsResponse.newBuilder().setDuplicate(dup).build();
    });
  }

  @Override
  public void getParam(GetParamRequest req, StreamObserver<org.pserver.proto.Parameter> out) {
    call(out, () -> toProto(whileWaiting(service, cancelled -> service.getParams(List.of(req.getName()), deadlineNanos(), cancelled)).get(0)));
  }

  @Override
  public void getParams(GetParamsRequest req, StreamObserver<GetParamsResponse> out) {
    call(out, () -> {
      GetParamsResponse.Builder b = GetParamsResponse.newBuilder();
      for (Parameter p : whileWaiting(service, cancelled -> service.getParams(req.getNamesList(), deadlineNanos(), cancelled))) {
        b.addParams(toProto(p));
      }
      return b.build();
    });
  }

  @Override
  public void checkpoint(CheckpointRequest req, StreamObserver<org.pserver.proto.CheckpointMeta> out) {
    call(out, () -> toProto(service.checkpoint()));
  }

  @Override
  public void status(StatusRequest req, StreamObserver<StatusResponse> out) {
    call(out, () -> {
      Service.Status s = service.status();
      StatusResponse.Builder b =
          StatusResponse.newBuilder()
              .setIndex(s.index())
              .setInitialized(s.initialized())
              .setParameterCount(s.parameterCount())
              .setParameterBytes(s.parameterBytes())
              .setKernels(s.kernels())
              .setServing(s.serving());
      if (s.lastCheckpoint() != null) {
        b.setLastCheckpoint(toProto(s.lastCheckpoint()));
      }
      return b.build();
    });
  }

  // ---------------------------------------------------------------------------------------------

  private static <T> void call(StreamObserver<T> out, Supplier<T> body) {
    T result;
    try {
      result = body.get();
    } catch (PServerException e) {
      out.onError(status(e).asRuntimeException());
      return;
    } catch (RuntimeException e) {
      LOG.error("internal error", e);
      out.onError(Status.INTERNAL.withDescription(String.valueOf(e)).asRuntimeException());
      return;
    }
    out.onNext(result);
    out.onCompleted();
  }

  /** The gRPC status of a refused operation: the same code, the message as description. */
  static Status status(PServerException e) {
    return Status.fromCodeValue(io.grpc.Status.Code.valueOf(e.code().name()).value())
        .withDescription(e.getMessage());
  }

  static ElementType type(int code) {
    if (code < 0 || code > 5) {
      throw new PServerException(
          PServerException.Code.INVALID_ARGUMENT, "unknown element type " + code + " (expected 0..5)");
    }
    return ElementType.fromCode(code);
  }

  /** A read-only view of the bytes: no copy. */
  private static ByteBuffer view(ByteString bytes) {
    return bytes.asReadOnlyByteBuffer();
  }

  private static Gradient gradient(org.pserver.proto.Gradient g) {
    return new Gradient(g.getName(), type(g.getElementTypeValue()), view(g.getContent()));
  }

  private static org.pserver.proto.Parameter toProto(Parameter p) {
    ByteBuffer c = p.content();
    ByteString bytes =
        c.hasArray() && c.arrayOffset() == 0 && c.position() == 0 && c.remaining() == c.array().length
            ? UnsafeByteOperations.unsafeWrap(c.array()) // a fresh copy the service made for us
            : ByteString.copyFrom(c.duplicate());
    return org.pserver.proto.Parameter.newBuilder()
        .setName(p.name())
        .setElementTypeValue(p.type().code())
        .setContent(bytes)
        .build();
  }

  static org.pserver.proto.CheckpointMeta toProto(CheckpointMeta m) {
    return org.pserver.proto.CheckpointMeta.newBuilder()
        .setUuid(m.uuid())
        .setPath(m.path())
        .setCrc32((int) m.crc32())
        .setTimestamp(m.timestamp())
        .build();
  }

  /**
   * Runs a read with a future that completes when the current call is cancelled (by the client,
   * its deadline, or the server's forced stop), for the service's wait for initialization to end
   * on. The listener is removed afterwards, so a read that did not wait costs nothing later. Once
   * {@code service} is initialized no read waits, and none of this is set up (null: never).
   */
  static <T> T whileWaiting(Service service, Function<CompletionStage<?>, T> read) {
    if (service.isInitialized()) {
      return read.apply(null);
    }
    Context call = Context.current();
    CompletableFuture<Void> cancelled = new CompletableFuture<>();
    Context.CancellationListener listener = c -> cancelled.complete(null);
    call.addListener(listener, Runnable::run);
    try {
      return read.apply(cancelled);
    } finally {
      call.removeListener(listener);
    }
  }

  /** The call's deadline as a System.nanoTime() value, or Long.MAX_VALUE without one. */
  static long deadlineNanos() {
    Deadline d = Context.current().getDeadline();
    if (d == null) {
      return Long.MAX_VALUE;
    }
    return System.nanoTime() + Math.max(0, d.timeRemaining(TimeUnit.NANOSECONDS));
  }
}
