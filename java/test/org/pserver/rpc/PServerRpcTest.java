package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.rpc.InProcessPServer.f32;
import static org.pserver.rpc.InProcessPServer.floats;
import static org.pserver.rpc.InProcessPServer.grad;
import static org.pserver.rpc.InProcessPServer.i64;
import static org.pserver.rpc.InProcessPServer.longs;
import static org.pserver.rpc.InProcessPServer.param;
import static org.pserver.rpc.InProcessPServer.sgd;

import com.google.protobuf.ByteString;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;
import org.pserver.Seed;
import org.pserver.proto.CheckpointMeta;
import org.pserver.proto.CheckpointRequest;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.GetParamsResponse;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.SendGradsRequest;
import org.pserver.proto.StatusRequest;
import org.pserver.proto.StatusResponse;
import org.pserver.service.Service;

/** Every RPC of the wire contract and every error it can return, over an in-process transport. */
class PServerRpcTest {
  @TempDir Path dir;
  InProcessPServer ps;

  @BeforeEach
  void start() throws Exception {
    ps = new InProcessPServer(dir);
  }

  @AfterEach
  void stop() {
    ps.close();
  }

  private static void assertStatus(Status.Code code, String message, Executable call) {
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, call);
    assertEquals(code, e.getStatus().getCode(), e.getStatus().toString());
    if (message != null) {
      assertEquals(message, e.getStatus().getDescription());
    }
  }

  private void initW() {
    ps.stub.initParam(param("w", ElementType.FLOAT32, f32(1, 2, 3), sgd(0.5, 0)));
  }

  private float[] get(String name) {
    return floats(ps.stub.getParam(GetParamRequest.newBuilder().setName(name).build()).getContent());
  }

  @Test
  void initThenTrainThenRead() {
    initW();
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(2, 2, 2)));
    assertArrayEquals(new float[] {0, 1, 2}, get("w"));
  }

  @Test
  void sendGradBeforeFinishFailsWithTheSeedsMessageAndDropsNothingSilently() {
    initW();
    assertStatus(Status.Code.FAILED_PRECONDITION, Seed.UNINITIALIZED,
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1))));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    assertArrayEquals(new float[] {1, 2, 3}, get("w"));
  }

  @Test
  void initAndFinishAfterFinishFail() {
    initW();
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    assertStatus(Status.Code.FAILED_PRECONDITION, Seed.ALREADY_INITIALIZED,
        () -> ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance()));
    assertStatus(Status.Code.FAILED_PRECONDITION, Seed.ALREADY_INITIALIZED,
        () -> ps.stub.initParam(param("v", ElementType.FLOAT32, f32(1), sgd(1, 0))));
  }

  @Test
  void concurrentFinishInitParamsExactlyOneWins() throws Exception {
    initW();
    int n = 8;
    ExecutorService pool = Executors.newFixedThreadPool(n);
    CountDownLatch go = new CountDownLatch(1);
    AtomicInteger ok = new AtomicInteger(), already = new AtomicInteger();
    try {
      for (int i = 0; i < n; i++) {
        pool.submit(() -> {
          go.await();
          try {
            ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
            ok.incrementAndGet();
          } catch (StatusRuntimeException e) {
            if (Seed.ALREADY_INITIALIZED.equals(e.getStatus().getDescription())) {
              already.incrementAndGet();
            }
          }
          return null;
        });
      }
      go.countDown();
      pool.shutdown();
      assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
    } finally {
      pool.shutdownNow();
    }
    assertEquals(1, ok.get());
    assertEquals(n - 1, already.get());
  }

  @Test
  void initParamOfAnExistingNameIsRejectedNotOverwritten() {
    initW();
    assertStatus(Status.Code.ALREADY_EXISTS, "parameter: w already exists",
        () -> ps.stub.initParam(param("w", ElementType.FLOAT32, f32(9, 9, 9), sgd(1, 0))));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    assertArrayEquals(new float[] {1, 2, 3}, get("w"));
  }

  @Test
  void badInitParamsAreInvalidArgumentsAndStoreNothing() {
    assertStatus(Status.Code.INVALID_ARGUMENT, null,
        () -> ps.stub.initParam(param("w", ElementType.FLOAT32, f32(1), ByteString.copyFrom(new byte[] {(byte) 0xff, 1, 2}))));
    assertStatus(Status.Code.INVALID_ARGUMENT, null,
        () -> ps.stub.initParam(param("w", ElementType.FLOAT32, ByteString.EMPTY, sgd(1, 0))));
    assertStatus(Status.Code.INVALID_ARGUMENT, null,
        () -> ps.stub.initParam(param("w", ElementType.FLOAT32, ByteString.copyFrom(new byte[] {1, 2, 3, 4, 5}), sgd(1, 0))));
    assertStatus(Status.Code.INVALID_ARGUMENT, null,
        () -> ps.stub.initParam(param("", ElementType.FLOAT32, f32(1), sgd(1, 0))));
    assertStatus(Status.Code.INVALID_ARGUMENT, "unknown element type 9 (expected 0..5)",
        () -> ps.stub.initParam(org.pserver.proto.ParameterWithConfig.newBuilder()
            .setParam(org.pserver.proto.Parameter.newBuilder().setName("w").setElementTypeValue(9).setContent(f32(1)))
            .build()));
    assertEquals(0, ps.stub.status(StatusRequest.getDefaultInstance()).getParameterCount());
  }

  @Test
  void gradientErrorsUseTheSeedsMessagesAndChangeNothing() {
    initW();
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    assertStatus(Status.Code.NOT_FOUND, "parameter: nope does not exist",
        () -> ps.stub.sendGrad(grad("nope", ElementType.FLOAT32, f32(1))));
    assertStatus(Status.Code.INVALID_ARGUMENT,
        "Name: w, parameter and gradient element type not match, parameter: 4, gradient: 5",
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT64, f32(1, 1, 1))));
    assertStatus(Status.Code.INVALID_ARGUMENT,
        "Name: w, parameter and gradient does not have same content len, parameter: 12, gradient: 8",
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1))));
    assertStatus(Status.Code.INVALID_ARGUMENT, "gradient w contains NaN or infinity; nothing was applied",
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, Float.NaN, 1))));
    assertStatus(Status.Code.INVALID_ARGUMENT, null,
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(Float.POSITIVE_INFINITY, 0, 0))));
    assertStatus(Status.Code.NOT_FOUND, "parameter: nope does not exist",
        () -> ps.stub.getParam(GetParamRequest.newBuilder().setName("nope").build()));
    assertArrayEquals(new float[] {1, 2, 3}, get("w"));
  }

  @Test
  void sendGradsIsAllOrNothing() {
    initW();
    ps.stub.initParam(param("v", ElementType.FLOAT32, f32(10), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    SendGradsRequest bad = SendGradsRequest.newBuilder()
        .addGrads(grad("v", ElementType.FLOAT32, f32(1)))
        .addGrads(grad("w", ElementType.FLOAT32, f32(1, Float.NaN, 1)))
        .build();
    assertStatus(Status.Code.INVALID_ARGUMENT, null, () -> ps.stub.sendGrads(bad));
    SendGradsRequest missing = SendGradsRequest.newBuilder()
        .addGrads(grad("v", ElementType.FLOAT32, f32(1)))
        .addGrads(grad("x", ElementType.FLOAT32, f32(1)))
        .build();
    assertStatus(Status.Code.NOT_FOUND, null, () -> ps.stub.sendGrads(missing));
    SendGradsRequest twice = SendGradsRequest.newBuilder()
        .addGrads(grad("v", ElementType.FLOAT32, f32(1)))
        .addGrads(grad("v", ElementType.FLOAT32, f32(1)))
        .build();
    assertStatus(Status.Code.INVALID_ARGUMENT, null, () -> ps.stub.sendGrads(twice));
    assertStatus(Status.Code.INVALID_ARGUMENT, "no gradient received", () -> ps.stub.sendGrads(SendGradsRequest.getDefaultInstance()));
    assertArrayEquals(new float[] {10}, get("v"));
    assertArrayEquals(new float[] {1, 2, 3}, get("w"));

    ps.stub.sendGrads(SendGradsRequest.newBuilder()
        .addGrads(grad("v", ElementType.FLOAT32, f32(2)))
        .addGrads(grad("w", ElementType.FLOAT32, f32(2, 2, 2)))
        .build());
    assertArrayEquals(new float[] {8}, get("v"));
    assertArrayEquals(new float[] {0, 1, 2}, get("w"));
  }

  @Test
  void retriedPushIsAcknowledgedAsDuplicateAndNotApplied() {
    ps.stub.initParam(param("c", ElementType.INT64, i64(0, 0), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    SendGradsRequest push = SendGradsRequest.newBuilder()
        .setTrainerId("t1").setSeq(7).setLowWatermark(7)
        .addGrads(grad("c", ElementType.INT64, i64(1, 2)))
        .build();
    assertFalse(ps.stub.sendGrads(push).getDuplicate());
    assertTrue(ps.stub.sendGrads(push).getDuplicate());
    assertFalse(ps.stub.sendGrads(push.toBuilder().setSeq(8).build()).getDuplicate());
    assertTrue(ps.stub.sendGrads(push.toBuilder().setSeq(3).build()).getDuplicate(), "below the watermark");
    assertFalse(ps.stub.sendGrads(push.toBuilder().setTrainerId("t2").build()).getDuplicate());
    assertArrayEquals(new long[] {-3, -6}, longs(ps.stub.getParam(GetParamRequest.newBuilder().setName("c").build()).getContent()));
  }

  @Test
  void getParamWaitsForInitializationWithinTheDeadline() throws Exception {
    initW();
    assertStatus(Status.Code.DEADLINE_EXCEEDED, null,
        () -> ps.stub.withDeadlineAfter(200, TimeUnit.MILLISECONDS).getParam(GetParamRequest.newBuilder().setName("w").build()));
    AtomicReference<float[]> got = new AtomicReference<>();
    CompletableFuture<Void> reader = CompletableFuture.runAsync(() -> got.set(get("w")));
    Thread.sleep(200);
    assertFalse(reader.isDone(), "GetParam must wait for FinishInitParams");
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    reader.get(5, TimeUnit.SECONDS);
    assertArrayEquals(new float[] {1, 2, 3}, got.get());
  }

  /** Reads "w" without a deadline in another thread; completes with the status it ends with. */
  private static CompletableFuture<Status> waitingRead(PServerGrpc.PServerBlockingStub stub, Context.CancellableContext ctx) {
    return CompletableFuture.supplyAsync(() -> {
      Context previous = ctx.attach();
      try {
        stub.getParam(GetParamRequest.newBuilder().setName("w").build());
        return Status.OK;
      } catch (StatusRuntimeException e) {
        return e.getStatus();
      } finally {
        ctx.detach(previous);
      }
    });
  }

  /** Server threads parked in the service's wait for initialization (found by its method name). */
  private static long threadsWaitingForInitialization() {
    return Thread.getAllStackTraces().values().stream()
        .filter(st -> java.util.Arrays.stream(st).anyMatch(
            f -> f.getClassName().equals(Service.class.getName()) && f.getMethodName().equals("awaitInitialized")))
        .count();
  }

  private static void awaitThreadsWaitingForInitialization(long n) throws InterruptedException {
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (threadsWaitingForInitialization() != n && System.nanoTime() < until) {
      Thread.sleep(20);
    }
    assertEquals(n, threadsWaitingForInitialization(), "server threads waiting for initialization");
  }

  @Test
  void aCancelledGetParamWaitingForInitializationReleasesItsServerThread() throws Exception {
    initW();
    // Server threads of its own (not the caller's, as with the direct executors of `ps`), so a
    // server thread still blocked after the client gave up can be seen.
    String name = io.grpc.inprocess.InProcessServerBuilder.generateName();
    PServerServer pooled = PServerServer.on(ps.service, io.grpc.inprocess.InProcessServerBuilder.forName(name),
        PServerServer.DEFAULT_MAX_MESSAGE_BYTES).start();
    io.grpc.ManagedChannel ch = io.grpc.inprocess.InProcessChannelBuilder.forName(name).build();
    try {
      Context.CancellableContext ctx = Context.current().withCancellation();
      CompletableFuture<Status> reader = waitingRead(PServerGrpc.newBlockingStub(ch), ctx);
      awaitThreadsWaitingForInitialization(1);
      ctx.cancel(null);
      assertEquals(Status.Code.CANCELLED, reader.get(5, TimeUnit.SECONDS).getCode());
      awaitThreadsWaitingForInitialization(0);
      ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
      assertArrayEquals(new float[] {1, 2, 3}, get("w"), "the pserver is unaffected");
    } finally {
      ch.shutdownNow();
      pooled.abort();
    }
  }

  @Test
  void aGetParamWaitingForInitializationDoesNotHoldShutdownUp() throws Exception {
    initW();
    CompletableFuture<Status> reader = waitingRead(ps.stub, Context.current().withCancellation());
    Thread.sleep(200);
    assertFalse(reader.isDone(), "GetParam waits for FinishInitParams");
    long start = System.nanoTime();
    ps.server.shutdown(Duration.ofSeconds(30));
    assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(10), "shutdown waited for the grace period");
    Status s = reader.get(5, TimeUnit.SECONDS);
    assertEquals(Status.Code.UNAVAILABLE, s.getCode(), s.toString());
    assertEquals("pserver 0 is shutting down", s.getDescription());
  }

  @Test
  void getParamsKeepsTheOrderAskedAndOfNothingReturnsNothing() {
    initW();
    ps.stub.initParam(param("a", ElementType.INT64, i64(5), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    GetParamsResponse r = ps.stub.getParams(GetParamsRequest.newBuilder().addNames("w").addNames("a").addNames("w").build());
    assertEquals(List.of("w", "a", "w"), r.getParamsList().stream().map(p -> p.getName()).toList());
    assertEquals(ElementType.INT64, r.getParams(1).getElementType());
    assertArrayEquals(new long[] {5}, longs(r.getParams(1).getContent()));
    assertEquals(0, ps.stub.getParams(GetParamsRequest.getDefaultInstance()).getParamsCount());
    assertStatus(Status.Code.NOT_FOUND, "parameter: zz does not exist",
        () -> ps.stub.getParams(GetParamsRequest.newBuilder().addNames("w").addNames("zz").build()));
  }

  @Test
  void checkpointAndStatus() {
    assertStatus(Status.Code.FAILED_PRECONDITION, Seed.UNINITIALIZED, () -> ps.stub.checkpoint(CheckpointRequest.getDefaultInstance()));
    initW();
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    CheckpointMeta m = ps.stub.checkpoint(CheckpointRequest.getDefaultInstance());
    assertEquals(36, m.getUuid().length());
    assertTrue(Path.of(m.getPath()).startsWith(dir.toAbsolutePath()), m.getPath());
    StatusResponse s = ps.stub.status(StatusRequest.getDefaultInstance());
    assertEquals(0, s.getIndex());
    assertTrue(s.getInitialized());
    assertEquals(1, s.getParameterCount());
    assertEquals(12, s.getParameterBytes());
    assertFalse(s.getKernels().isEmpty());
    assertEquals(m, s.getLastCheckpoint());
    assertTrue(s.getServing());
  }

  @Test
  void healthFollowsTheWriteGate() throws Exception {
    AtomicReference<String> refusal = new AtomicReference<>();
    ps.close();
    ps = new InProcessPServer(dir, refusal::get, null, PServerServer.DEFAULT_MAX_MESSAGE_BYTES);
    HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(ps.channel);
    HealthCheckRequest req = HealthCheckRequest.newBuilder().setService("pserver.PServer").build();
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, health.check(req).getStatus());
    initW();
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    refusal.set("lease lost");
    assertStatus(Status.Code.UNAVAILABLE, "pserver 0 is not accepting writes: lease lost",
        () -> ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1))));
    long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
    while (health.check(req).getStatus() != HealthCheckResponse.ServingStatus.NOT_SERVING && System.nanoTime() < until) {
      Thread.sleep(50);
    }
    assertEquals(HealthCheckResponse.ServingStatus.NOT_SERVING, health.check(req).getStatus());
    refusal.set(null);
    ps.stub.sendGrad(grad("w", ElementType.FLOAT32, f32(1, 1, 1)));
    assertArrayEquals(new float[] {0.5f, 1.5f, 2.5f}, get("w"));
  }

  /** Completes with the first reply of a reflection stream, or its error. */
  private static <T> StreamObserver<T> firstReply(CompletableFuture<T> reply) {
    return new StreamObserver<>() {
      @Override
      public void onNext(T v) {
        reply.complete(v);
      }

      @Override
      public void onError(Throwable t) {
        reply.completeExceptionally(t);
      }

      @Override
      public void onCompleted() {}
    };
  }

  @Test
  void reflectionIsOnInBothVersions() {
    CompletableFuture<io.grpc.reflection.v1.ServerReflectionResponse> v1 = new CompletableFuture<>();
    StreamObserver<io.grpc.reflection.v1.ServerReflectionRequest> req =
        io.grpc.reflection.v1.ServerReflectionGrpc.newStub(ps.channel).serverReflectionInfo(firstReply(v1));
    req.onNext(io.grpc.reflection.v1.ServerReflectionRequest.newBuilder().setListServices("").build());
    req.onCompleted();
    List<String> names = v1.join().getListServicesResponse().getServiceList().stream().map(s -> s.getName()).toList();
    assertTrue(names.contains("pserver.PServer"), names.toString());

    // Older grpcurl and other tools still ask the v1alpha service.
    CompletableFuture<io.grpc.reflection.v1alpha.ServerReflectionResponse> alpha = new CompletableFuture<>();
    StreamObserver<io.grpc.reflection.v1alpha.ServerReflectionRequest> oldReq =
        io.grpc.reflection.v1alpha.ServerReflectionGrpc.newStub(ps.channel).serverReflectionInfo(firstReply(alpha));
    oldReq.onNext(io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder().setFileContainingSymbol("pserver.PServer").build());
    oldReq.onCompleted();
    io.grpc.reflection.v1alpha.ServerReflectionResponse r = alpha.join();
    assertFalse(r.hasErrorResponse(), r.toString());
    assertTrue(r.getFileDescriptorResponse().getFileDescriptorProtoCount() > 0, r.toString());
  }

  @Test
  void noUpdateIsLostUnderConcurrency() throws Exception {
    ps.stub.initParam(param("c", ElementType.INT64, i64(0, 0, 0), sgd(1, 0)));
    ps.stub.initParam(param("d", ElementType.INT64, i64(0), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    int trainers = 8, k = 400;
    ExecutorService pool = Executors.newFixedThreadPool(trainers);
    try {
      List<Future<?>> fs = new java.util.ArrayList<>();
      for (int t = 0; t < trainers; t++) {
        fs.add(pool.submit(() -> {
          for (int i = 0; i < k; i++) {
            ps.stub.sendGrads(SendGradsRequest.newBuilder()
                .addGrads(grad("c", ElementType.INT64, i64(1, 1, 1)))
                .addGrads(grad("d", ElementType.INT64, i64(1)))
                .build());
          }
        }));
      }
      for (Future<?> f : fs) {
        f.get(60, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
    }
    long want = -(long) trainers * k;
    assertArrayEquals(new long[] {want, want, want}, longs(ps.stub.getParam(GetParamRequest.newBuilder().setName("c").build()).getContent()));
    assertArrayEquals(new long[] {want}, longs(ps.stub.getParam(GetParamRequest.newBuilder().setName("d").build()).getContent()));
  }

  @Test
  void shutdownRefusesWritesAndCheckpointsWhatWasAcknowledged() throws Exception {
    ps.stub.initParam(param("c", ElementType.INT64, i64(0), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    for (int i = 0; i < 5; i++) {
      ps.stub.sendGrad(grad("c", ElementType.INT64, i64(1)));
    }
    org.pserver.checkpoint.CheckpointMeta last = ps.service.shutdown();
    org.pserver.service.PServerException refused = assertThrows(org.pserver.service.PServerException.class,
        () -> ps.service.sendGrads(List.of(new org.pserver.service.Gradient("c", org.pserver.ElementType.INT64,
            java.nio.ByteBuffer.allocate(8))), null, 0, 0));
    assertEquals(org.pserver.service.PServerException.Code.UNAVAILABLE, refused.code());
    assertEquals("pserver 0 is shutting down", refused.getMessage());
    org.pserver.checkpoint.Checkpoint cp = ps.checkpoints.recover().orElseThrow();
    assertEquals(last.uuid(), cp.meta().uuid());
    java.nio.ByteBuffer w = cp.entries().get(0).optimizer().weights().order(java.nio.ByteOrder.LITTLE_ENDIAN);
    assertEquals(-5, w.getLong(0));
  }

  @Test
  void aRestoredServiceStartsInitializedAndKeepsCheckpointing() throws Exception {
    ps.stub.initParam(param("c", ElementType.INT64, i64(0), sgd(1, 0)));
    ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
    ps.stub.sendGrad(grad("c", ElementType.INT64, i64(4)));
    ps.stub.checkpoint(CheckpointRequest.getDefaultInstance());
    ps.close();
    org.pserver.checkpoint.Checkpoint cp = ps.checkpoints.recover().orElseThrow();
    ps = new InProcessPServer(dir, Service.WriteGate.OPEN, cp, PServerServer.DEFAULT_MAX_MESSAGE_BYTES);
    assertTrue(ps.stub.status(StatusRequest.getDefaultInstance()).getInitialized());
    assertStatus(Status.Code.FAILED_PRECONDITION, Seed.ALREADY_INITIALIZED,
        () -> ps.stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance()));
    ps.stub.sendGrad(grad("c", ElementType.INT64, i64(1)));
    CheckpointMeta m = ps.stub.checkpoint(CheckpointRequest.getDefaultInstance());
    assertFalse(m.getUuid().equals(cp.meta().uuid()));
    assertArrayEquals(new long[] {-5}, longs(ps.stub.getParam(GetParamRequest.newBuilder().setName("c").build()).getContent()));
  }
}
