package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.pserver.kernels.Kernels;
import org.pserver.proto.ElementType;
import org.pserver.proto.FinishInitParamsRequest;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.StatusRequest;
import org.pserver.service.Service;

/** Message limits over real Netty transport: explicit, sized for real models, and enforced cleanly. */
class MessageLimitsTest {
  private static Service service() {
    return new Service(new Service.Options(0, Kernels.get(), Duration.ZERO, false, Duration.ofHours(1)), null, null, Service.WriteGate.OPEN);
  }

  @Test
  void aHundredMegabyteParameterWorksWithTheDefaults() throws Exception {
    try (PServerServer server = PServerServer.netty(service(), 0, PServerServer.DEFAULT_MAX_MESSAGE_BYTES).start()) {
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext()
          .maxInboundMessageSize(PServerServer.DEFAULT_MAX_MESSAGE_BYTES).build();
      try {
        PServerGrpc.PServerBlockingStub stub = PServerGrpc.newBlockingStub(ch);
        byte[] content = new byte[100 << 20];
        for (int i = 0; i < content.length; i += 4096) {
          content[i] = (byte) i;
        }
        stub.initParam(InProcessPServer.param("big", ElementType.UINT32, ByteString.copyFrom(content), ByteString.EMPTY));
        stub.finishInitParams(FinishInitParamsRequest.getDefaultInstance());
        ByteString back = stub.getParam(GetParamRequest.newBuilder().setName("big").build()).getContent();
        assertEquals(content.length, back.size());
        assertEquals(ByteString.copyFrom(content), back);
      } finally {
        ch.shutdownNow();
      }
    }
  }

  @Test
  void aRequestOverTheLimitIsResourceExhaustedAndChangesNothing() throws Exception {
    try (PServerServer server = PServerServer.netty(service(), 0, 1 << 20).start()) {
      ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", server.port()).usePlaintext().build();
      try {
        PServerGrpc.PServerBlockingStub stub = PServerGrpc.newBlockingStub(ch);
        StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () ->
            stub.initParam(InProcessPServer.param("w", ElementType.FLOAT32, ByteString.copyFrom(new byte[2 << 20]), ByteString.EMPTY)));
        assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode(), e.getStatus().toString());
        assertEquals(0, stub.status(StatusRequest.getDefaultInstance()).getParameterCount());
        stub.initParam(InProcessPServer.param("w", ElementType.FLOAT32, ByteString.copyFrom(new byte[1 << 19]), ByteString.EMPTY));
        assertEquals(1, stub.status(StatusRequest.getDefaultInstance()).getParameterCount());
      } finally {
        ch.shutdownNow();
      }
    }
  }
}
