package org.pserver.rpc;

import io.grpc.MethodDescriptor;
import io.grpc.ServerCallHandler;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.pserver.proto.GetParamRequest;
import org.pserver.proto.GetParamsRequest;
import org.pserver.proto.InitParamResponse;
import org.pserver.proto.PServerGrpc;
import org.pserver.proto.SendGradResponse;
import org.pserver.proto.SendGradsResponse;
import org.pserver.rpc.Requests.Grads;
import org.pserver.rpc.Requests.Received;
import org.pserver.service.ParameterWithConfig;
import org.pserver.service.Service;
import org.pserver.service.WeightsSource;

/**
 * The {@code pserver.PServer} service bound with the bulk-data methods on their fast paths:
 * SendGrads, SendGrad and InitParam parse their requests in place ({@link Requests}) and release
 * the network buffers right after the service call; GetParam and GetParams write their replies
 * straight from the weights ({@link ParamReplies}). The other methods keep the generated binding.
 *
 * <p>Same method names, same wire format, same status codes and messages as the generated
 * binding, and the same schema descriptor (server reflection is unchanged); only the marshallers
 * and handlers differ.
 */
final class FastPaths {
  private FastPaths() {}

  static ServerServiceDefinition bind(ServerServiceDefinition generated, Service service, ReceiveBuffers pool) {
    Map<String, ServerMethodDefinition<?, ?>> fast = new HashMap<>();
    put(fast, PServerGrpc.getSendGradsMethod().toBuilder(
            Requests.sendGrads(pool), PServerGrpc.getSendGradsMethod().getResponseMarshaller()).build(),
        new UnaryHandler<Received<Grads>, SendGradsResponse>(
            r -> SendGradsResponse.newBuilder().setDuplicate(push(service, r)).build(), Received::close));
    put(fast, PServerGrpc.getSendGradMethod().toBuilder(
            Requests.sendGrad(pool), PServerGrpc.getSendGradMethod().getResponseMarshaller()).build(),
        new UnaryHandler<Received<Grads>, SendGradResponse>(
            r -> SendGradResponse.newBuilder().setDuplicate(push(service, r)).build(), Received::close));
    put(fast, PServerGrpc.getInitParamMethod().toBuilder(
            Requests.initParam(pool), PServerGrpc.getInitParamMethod().getResponseMarshaller()).build(),
        new UnaryHandler<Received<ParameterWithConfig>, InitParamResponse>(r -> {
          service.initParam(r.get());
          return InitParamResponse.getDefaultInstance();
        }, Received::close));
    put(fast, PServerGrpc.getGetParamMethod().toBuilder(
            PServerGrpc.getGetParamMethod().getRequestMarshaller(), ParamReplies.MARSHALLER).build(),
        UnaryHandler.<GetParamRequest, ParamReplies.Reply>plain(req -> new ParamReplies.Reply(
            open(service, List.of(req.getName())), true)));
    put(fast, PServerGrpc.getGetParamsMethod().toBuilder(
            PServerGrpc.getGetParamsMethod().getRequestMarshaller(), ParamReplies.MARSHALLER).build(),
        UnaryHandler.<GetParamsRequest, ParamReplies.Reply>plain(req -> new ParamReplies.Reply(
            open(service, req.getNamesList()), false)));

    ServiceDescriptor generatedDescriptor = generated.getServiceDescriptor();
    List<ServerMethodDefinition<?, ?>> methods = new ArrayList<>();
    ServiceDescriptor.Builder descriptor = ServiceDescriptor.newBuilder(generatedDescriptor.getName())
        .setSchemaDescriptor(generatedDescriptor.getSchemaDescriptor());
    for (ServerMethodDefinition<?, ?> m : generated.getMethods()) {
      ServerMethodDefinition<?, ?> chosen = fast.getOrDefault(m.getMethodDescriptor().getFullMethodName(), m);
      methods.add(chosen);
      descriptor.addMethod(chosen.getMethodDescriptor());
    }
    ServerServiceDefinition.Builder b = ServerServiceDefinition.builder(descriptor.build());
    for (ServerMethodDefinition<?, ?> m : methods) {
      b.addMethod(m);
    }
    return b.build();
  }

  /** The parameters to send, waiting for initialization within the call's deadline and cancellation. */
  private static List<WeightsSource> open(Service service, List<String> names) {
    return PServerGrpcService.whileWaiting(service, cancelled -> service.openParams(names, PServerGrpcService.deadlineNanos(), cancelled));
  }

  /** Applies a parsed push; true if it was a duplicate. */
  private static boolean push(Service service, Received<Grads> r) {
    Grads g = r.get();
    return service.sendGrads(g.grads(), g.trainerId(), g.seq(), g.lowWatermark());
  }

  private static <Q, R> void put(
      Map<String, ServerMethodDefinition<?, ?>> fast, MethodDescriptor<Q, R> method, ServerCallHandler<Q, R> handler) {
    fast.put(method.getFullMethodName(), ServerMethodDefinition.create(method, handler));
  }
}
