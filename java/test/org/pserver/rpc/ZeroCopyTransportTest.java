package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.rpc.InProcessPServer.f32;
import static org.pserver.rpc.InProcessPServer.grad;
import static org.pserver.rpc.InProcessPServer.i64;
import static org.pserver.rpc.InProcessPServer.param;
import static org.pserver.rpc.InProcessPServer.sgd;

import com.google.protobuf.ByteString;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ClientCalls;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Function;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.pserver.kernels.Kernels;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.Parameter;
import org.pserver.proto.SendGradsRequest;
import org.pserver.service.Service;

/**
 * The fast paths over the real Netty transport, where gRPC hands the marshallers detachable
 * network buffers: results are exact, every received message is released (also when the call
 * fails, is cancelled or carries two messages), malformed protobuf is INVALID_ARGUMENT, replies
 * are protobuf's encoding, reads are never torn, and the fast and the stock bindings answer alike.
 */
class ZeroCopyTransportTest {
  private Service service;
  private PServerServer server;
  private ManagedChannel channel;
  private PServerGrpc.PServerBlockingStub stub;

  private static Service newService() {
    return new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), null, null, Service.WriteGate.OPEN);
  }

  private static ManagedChannel channel(int port) {
    return NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext()
        .maxInboundMessageSize(PServerServer.DEFAULT_MAX_MESSAGE_BYTES).build();
  }

  @BeforeEach
  void start() throws IOException {
    service = newService();
    server = PServerServer.netty(service, 0, PServerServer.DEFAULT_MAX_MESSAGE_BYTES).start();
    channel = channel(server.port());
    stub = PServerGrpc.newBlockingStub(channel);
  }

  @AfterEach
  void stop() {
    channel.shutdownNow();
    server.shutdown(Duration.ofSeconds(5));
  }

  /** Waits until every received message has been released (the release follows the reply). */
  private static void assertAllReleased() throws InterruptedException {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (Inbound.open() != 0 && System.nanoTime() < until) {
      Thread.sleep(5);
    }
    assertEquals(0, Inbound.open(), "received messages still holding network buffers");
  }

  private static ByteString floats(int n, Function<Integer, Float> f) {
    ByteBuffer b = ByteBuffer.allocate(4 * n).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      b.putFloat(f.apply(i));
    }
    return ByteString.copyFrom(b.array());
  }

  @Test
  void largeAndSmallGradientsApplyExactly() throws Exception {
    int n = 1 << 20; // 4 MiB: hundreds of network buffers
    stub.initParam(param("big", ElementType.FLOAT32, floats(n, i -> (float) (i % 1000)), sgd(1, 0)));
    stub.initParam(param("small", ElementType.FLOAT32, f32(1, 2, 3), sgd(1, 0)));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    for (int step = 1; step <= 3; step++) {
      stub.sendGrads(SendGradsRequest.newBuilder()
          .addGrads(grad("big", ElementType.FLOAT32, floats(n, i -> (float) (i % 7))))
          .addGrads(grad("small", ElementType.FLOAT32, f32(1, 1, 1)))
          .build());
    }
    // A large message may arrive partly in a composite Netty buffer (a frame split across socket
    // reads), whose rest is then copied off-heap: that depends on timing, so only the results of
    // the large pushes are checked. A small request after the others arrives in one read, in one
    // buffer, and must be seen in place.
    long zeroCopyBefore = Inbound.zeroCopyMessages();
    stub.sendGrad(grad("small", ElementType.FLOAT32, f32(-1, -1, -1)));
    assertEquals(zeroCopyBefore + 1, Inbound.zeroCopyMessages(), "a Netty request takes the zero-copy path");
    GetParamsResponse r = stub.getParams(GetParamsRequest.newBuilder().addNames("small").addNames("big").build());
    assertArrayEquals(new float[] {-1, 0, 1}, InProcessPServer.floats(r.getParams(0).getContent()));
    ByteBuffer big = r.getParams(1).getContent().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      float want = (float) (i % 1000) - 3 * (i % 7);
      if (big.getFloat(4 * i) != want) {
        throw new AssertionError("big[" + i + "] = " + big.getFloat(4 * i) + ", expected " + want);
      }
    }
    assertAllReleased();
  }

  // --- raw calls: bytes in, bytes out ---------------------------------------------------------

  private static MethodDescriptor<byte[], byte[]> raw(String method, MethodDescriptor.MethodType type) {
    return MethodDescriptor.<byte[], byte[]>newBuilder().setType(type)
        .setFullMethodName(MethodDescriptor.generateFullMethodName("pserver.PServer", method))
        .setRequestMarshaller(RawBytes.MARSHALLER).setResponseMarshaller(RawBytes.MARSHALLER).build();
  }

  private byte[] rawCall(String method, byte[] request) {
    return ClientCalls.blockingUnaryCall(channel, raw(method, MethodDescriptor.MethodType.UNARY), CallOptions.DEFAULT, request);
  }

  @Test
  void malformedProtobufIsInvalidArgument() throws Exception {
    byte[][] bad = {{0x0A, 0x7F, 0x01}, {0x0F}, {0x0A, 0x02, 0x0A, (byte) 0xFF}};
    for (String method : new String[] {"SendGrads", "SendGrad", "InitParam"}) {
      for (byte[] b : bad) {
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> rawCall(method, b));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode(), method + ": " + e.getStatus());
        assertTrue(e.getStatus().getDescription().startsWith("malformed "), e.getStatus().getDescription());
      }
    }
    StatusRuntimeException empty = assertThrows(StatusRuntimeException.class, () -> rawCall("SendGrads", new byte[0]));
    assertEquals(Status.Code.FAILED_PRECONDITION, empty.getStatus().getCode(), "not initialized comes first");
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    StatusRuntimeException none = assertThrows(StatusRuntimeException.class, () -> rawCall("SendGrads", new byte[0]));
    assertEquals("no gradient received", none.getStatus().getDescription());
    assertAllReleased();
  }

  @Test
  void cancelledAndDoubledRequestsAreReleased() throws Exception {
    stub.initParam(param("w", ElementType.FLOAT32, floats(1 << 18, i -> 0f), sgd(1, 0)));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    byte[] push = SendGradsRequest.newBuilder()
        .addGrads(grad("w", ElementType.FLOAT32, floats(1 << 18, i -> 1f))).build().toByteArray();
    for (int i = 0; i < 20; i++) {
      // Sent but never half-closed, then cancelled: the server parses it and must drop it.
      ClientCall<byte[], byte[]> call = channel.newCall(raw("SendGrads", MethodDescriptor.MethodType.UNARY), CallOptions.DEFAULT);
      call.start(new ClientCall.Listener<>() {}, new Metadata());
      call.request(1);
      call.sendMessage(push);
      Thread.sleep(i % 4);
      call.cancel("test", null);
    }
    // Two messages on a unary method.
    CompletableFuture<Status> two = new CompletableFuture<>();
    ClientCall<byte[], byte[]> call = channel.newCall(raw("SendGrads", MethodDescriptor.MethodType.CLIENT_STREAMING), CallOptions.DEFAULT);
    call.start(new ClientCall.Listener<>() {
      @Override
      public void onClose(Status status, Metadata trailers) {
        two.complete(status);
      }
    }, new Metadata());
    call.request(1);
    call.sendMessage(push);
    call.sendMessage(push);
    call.halfClose();
    Status s = two.get(10, TimeUnit.SECONDS);
    // The server refuses with INTERNAL "Too many requests"; a client still sending sees the
    // stream reset instead (CANCELLED). Either way both messages must have been released.
    assertTrue(s.getCode() == Status.Code.CANCELLED
        || (s.getCode() == Status.Code.INTERNAL && "Too many requests".equals(s.getDescription())), s.toString());
    assertAllReleased();
  }

  @Test
  void repliesAreProtobufsEncodingByteForByte() throws Exception {
    stub.initParam(param("ints", ElementType.INT32, ByteString.copyFrom(new byte[] {1, 0, 0, 0, 2, 0, 0, 0}), sgd(1, 0)));
    stub.initParam(param("größe", ElementType.INT64, i64(-5, 7), sgd(1, 0)));
    stub.initParam(param("f", ElementType.FLOAT32, floats(100_000, i -> i * 0.5f), sgd(1, 0)));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    GetParamsRequest all = GetParamsRequest.newBuilder().addNames("f").addNames("ints").addNames("größe").addNames("ints").build();
    GetParamsResponse want = GetParamsResponse.newBuilder()
        .addParams(Parameter.newBuilder().setName("f").setElementType(ElementType.FLOAT32).setContent(floats(100_000, i -> i * 0.5f)))
        .addParams(Parameter.newBuilder().setName("ints").setElementType(ElementType.INT32).setContent(ByteString.copyFrom(new byte[] {1, 0, 0, 0, 2, 0, 0, 0})))
        .addParams(Parameter.newBuilder().setName("größe").setElementType(ElementType.INT64).setContent(i64(-5, 7)))
        .addParams(Parameter.newBuilder().setName("ints").setElementType(ElementType.INT32).setContent(ByteString.copyFrom(new byte[] {1, 0, 0, 0, 2, 0, 0, 0})))
        .build();
    assertArrayEquals(want.toByteArray(), rawCall("GetParams", all.toByteArray()));
    assertArrayEquals(want.getParams(2).toByteArray(),
        rawCall("GetParam", GetParamRequest.newBuilder().setName("größe").build().toByteArray()));
    assertArrayEquals(want.getParams(1).toByteArray(),
        rawCall("GetParam", GetParamRequest.newBuilder().setName("ints").build().toByteArray()));
    assertEquals(0, rawCall("GetParams", new byte[0]).length, "GetParams of nothing is an empty message");
  }

  @Test
  void readsAreNeverTornWhileUpdatesRun() throws Exception {
    int n = 1 << 21; // 16 MiB of int64: each read takes a while under the lock
    stub.initParam(param("c", ElementType.INT64, ByteString.copyFrom(new byte[8 * n]), sgd(1, 0)));
    stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    ByteBuffer minusOne = ByteBuffer.allocate(8 * n).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < n; i++) {
      minusOne.putLong(-1);
    }
    ByteString g = ByteString.copyFrom(minusOne.array());
    AtomicBoolean stop = new AtomicBoolean();
    CompletableFuture<Integer> writer = CompletableFuture.supplyAsync(() -> {
      int pushes = 0;
      while (!stop.get()) {
        stub.sendGrad(grad("c", ElementType.INT64, g));
        pushes++;
      }
      return pushes;
    });
    List<Long> seen = new ArrayList<>();
    long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(1500);
    while (System.nanoTime() < until || seen.size() < 3) {
      ByteBuffer c = stub.getParam(GetParamRequest.newBuilder().setName("c").build()).getContent()
          .asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
      long first = c.getLong(0);
      for (int i = 1; i < n; i++) {
        if (c.getLong(8 * i) != first) {
          throw new AssertionError("torn read: element 0 is " + first + ", element " + i + " is " + c.getLong(8 * i));
        }
      }
      seen.add(first);
    }
    stop.set(true);
    int pushes = writer.get(30, TimeUnit.SECONDS);
    long last = stub.getParam(GetParamRequest.newBuilder().setName("c").build()).getContent()
        .asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).getLong(8 * (n - 1));
    assertEquals(pushes, last, "every push applied once");
    for (int i = 1; i < seen.size(); i++) {
      assertTrue(seen.get(i) >= seen.get(i - 1), "reads go forward: " + seen);
    }
    assertAllReleased();
  }

  @Test
  void theFastAndTheStockBindingAnswerAlike() throws Exception {
    Service stockService = newService();
    Server stock = NettyServerBuilder.forAddress(new java.net.InetSocketAddress("127.0.0.1", 0))
        .maxInboundMessageSize(PServerServer.DEFAULT_MAX_MESSAGE_BYTES)
        .addService(new PServerGrpcService(stockService, false)).build().start();
    ManagedChannel stockChannel = channel(stock.getPort());
    try {
      List<String> fast = scenario(stub);
      List<String> slow = scenario(PServerGrpc.newBlockingStub(stockChannel));
      assertEquals(slow, fast);
    } finally {
      stockChannel.shutdownNow();
      stock.shutdownNow();
      stockService.shutdown();
    }
    assertAllReleased();
  }

  /** A sequence of calls, good and bad; what each returned, as text. */
  private static List<String> scenario(PServerGrpc.PServerBlockingStub s) {
    List<String> out = new ArrayList<>();
    List<Runnable> calls = List.of(
        () -> out.add(s.initParam(param("w", ElementType.FLOAT32, f32(1, 2, 3), sgd(0.5, 0.9))).toString()),
        () -> out.add(s.initParam(param("w", ElementType.FLOAT32, f32(1), sgd(1, 0))).toString()),
        () -> out.add(s.initParam(param("", ElementType.FLOAT32, f32(1), sgd(1, 0))).toString()),
        () -> out.add(s.initParam(param("e", ElementType.FLOAT32, ByteString.EMPTY, sgd(1, 0))).toString()),
        () -> out.add(s.initParam(org.pserver.proto.ParameterWithConfig.newBuilder().setParam(
            Parameter.newBuilder().setName("x").setElementTypeValue(7).setContent(f32(1))).build()).toString()),
        () -> out.add(s.initParam(param("big", ElementType.FLOAT64, ByteString.copyFrom(new byte[8 * 100_000]), sgd(1, 0))).toString()),
        () -> out.add(s.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1))).toString()),
        () -> out.add(s.finishInitParams(FinishInitParamsRequest.getDefaultInstance()).toString()),
        () -> out.add(s.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1))).toString()),
        () -> out.add(s.sendGrad(grad("w", ElementType.FLOAT64, f32(1, 1, 1))).toString()),
        () -> out.add(s.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1))).toString()),
        () -> out.add(s.sendGrad(grad("w", ElementType.FLOAT32, f32(1, Float.NaN, 1))).toString()),
        () -> out.add(s.sendGrad(grad("nope", ElementType.FLOAT32, f32(1))).toString()),
        () -> out.add(s.sendGrad(org.pserver.proto.Gradient.newBuilder().setName("w").setElementTypeValue(-3).build()).toString()),
        () -> out.add(s.sendGrads(SendGradsRequest.newBuilder().setTrainerId("t").setSeq(1)
            .addGrads(grad("w", ElementType.FLOAT32, f32(2, 2, 2)))
            .addGrads(grad("big", ElementType.FLOAT64, ByteString.copyFrom(new byte[8 * 100_000]))).build()).toString()),
        () -> out.add(s.sendGrads(SendGradsRequest.newBuilder().setTrainerId("t").setSeq(1)
            .addGrads(grad("w", ElementType.FLOAT32, f32(2, 2, 2)))
            .addGrads(grad("big", ElementType.FLOAT64, ByteString.copyFrom(new byte[8 * 100_000]))).build()).toString()),
        () -> out.add(s.sendGrads(SendGradsRequest.newBuilder()
            .addGrads(grad("w", ElementType.FLOAT32, f32(2, 2, 2))).addGrads(grad("w", ElementType.FLOAT32, f32(2, 2, 2))).build()).toString()),
        () -> out.add(s.sendGrads(SendGradsRequest.getDefaultInstance()).toString()),
        () -> out.add(s.getParam(GetParamRequest.newBuilder().setName("w").build()).toString()),
        () -> out.add(s.getParam(GetParamRequest.newBuilder().setName("zz").build()).toString()),
        () -> out.add(String.valueOf(s.getParams(GetParamsRequest.newBuilder().addNames("big").addNames("w").build()).hashCode())),
        () -> out.add(s.getParams(GetParamsRequest.newBuilder().addNames("w").addNames("zz").build()).toString()),
        () -> out.add(s.getParams(GetParamsRequest.getDefaultInstance()).toString()));
    for (Runnable c : calls) {
      try {
        c.run();
      } catch (StatusRuntimeException e) {
        out.add(e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      }
    }
    return out;
  }
}
