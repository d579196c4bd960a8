package org.pserver.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.UnknownFieldSet;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.pserver.proto.ElementType;
import org.pserver.proto.Gradient;
import org.pserver.proto.Parameter;
import org.pserver.proto.ParameterWithConfig;
import org.pserver.proto.SendGradsRequest;
import org.pserver.rpc.Requests.Grads;
import org.pserver.rpc.Requests.Received;
import org.pserver.service.PServerException;

/**
 * The zero-copy request marshallers against protobuf's own encoding: every way a message can be
 * cut into network buffers gives the same values; views stay valid until release and the buffers
 * are released exactly once; malformed input is INVALID_ARGUMENT with a clear message.
 */
class RequestsTest {
  private final ReceiveBuffers pool = new ReceiveBuffers(64L << 20);

  private static ByteString bytes(int n, long seed) {
    byte[] b = new byte[n];
    new SplittableRandom(seed).nextBytes(b);
    return ByteString.copyFrom(b);
  }

  private static Gradient grad(String name, ElementType t, ByteString content) {
    return Gradient.newBuilder().setName(name).setElementType(t).setContent(content).build();
  }

  /** Five gradients, one of them {@code big} float64 elements, and an unknown field. */
  private static SendGradsRequest sample(int big) {
    return SendGradsRequest.newBuilder()
        .addGrads(grad("small", ElementType.FLOAT32, bytes(1024, 1)))
        .addGrads(grad("big", ElementType.FLOAT64, bytes(big * 8, 2)))
        .addGrads(grad("ints", ElementType.INT32, bytes(4 * 17, 3)))
        .addGrads(grad("empty", ElementType.UINT64, ByteString.EMPTY))
        .addGrads(grad("größe/ü", ElementType.INT64, bytes(8 * 1001, 4)))
        .setTrainerId("trainer-7").setSeq(Long.MAX_VALUE).setLowWatermark(-1)
        .setUnknownFields(UnknownFieldSet.newBuilder()
            .addField(99, UnknownFieldSet.Field.newBuilder().addVarint(5).addLengthDelimited(ByteString.copyFromUtf8("x")).build())
            .build())
        .build();
  }

  private static void assertSameGrads(SendGradsRequest want, Grads got, String where) {
    assertEquals(want.getGradsCount(), got.grads().size(), where);
    for (int i = 0; i < want.getGradsCount(); i++) {
      Gradient w = want.getGrads(i);
      org.pserver.service.Gradient g = got.grads().get(i);
      assertEquals(w.getName(), g.name(), where);
      assertEquals(w.getElementTypeValue(), g.type().code(), where);
      assertEquals(w.getContent(), ByteString.copyFrom(g.content().duplicate()), where + ": content of " + w.getName());
    }
    assertEquals(want.getTrainerId(), got.trainerId(), where);
    assertEquals(want.getSeq(), got.seq(), where);
    assertEquals(want.getLowWatermark(), got.lowWatermark(), where);
  }

  @Test
  void everyFragmentationGivesTheSameValuesAndReleasesOnce() {
    SendGradsRequest large = sample(300_000), small = sample(1000);
    int n = large.getSerializedSize();
    int[][] cuts = {{n}, {16384}, {1}, {7}, {3, 1000, 5}, {16389, 2, 65536}, {n - 1, 1}};
    for (boolean direct : new boolean[] {true, false}) {
      for (int[] cut : cuts) {
        SendGradsRequest req = cut[0] < 1000 ? small : large; // tiny pieces of 2 MB are too slow
        byte[] wire = req.toByteArray();
        String where = (direct ? "direct" : "heap") + " pieces " + java.util.Arrays.toString(cut);
        AtomicInteger closes = new AtomicInteger();
        Received<Grads> r = Requests.sendGrads(pool).parse(FragmentedStream.of(wire, direct, closes, cut));
        assertSameGrads(req, r.get(), where);
        for (org.pserver.service.Gradient g : r.get().grads()) {
          assertTrue(g.content().isDirect() || g.content().remaining() == 0, where + ": kernels need direct memory");
        }
        assertEquals(0, closes.get(), where + ": released before the call finished");
        r.close();
        r.close();
        assertEquals(1, closes.get(), where + ": the detached buffers are released exactly once");
      }
    }
    assertEquals(0, Inbound.open(), "nothing left open");
  }

  @Test
  void contentInsideOneAlignedDirectBufferIsAViewAndAMisalignedOneIsCopied() {
    ReceiveBuffers p = new ReceiveBuffers(64L << 20);
    // FragmentedStream's direct pieces start 3 bytes past an 8-byte boundary; the content starts
    // at byte 7 + name length of the message: name "ww" puts it on a 4-byte boundary, "w" not.
    for (String name : new String[] {"ww", "w"}) {
      byte[] wire = grad(name, ElementType.FLOAT32, bytes(4096, 9)).toByteArray();
      AtomicInteger closes = new AtomicInteger();
      Received<Grads> r = Requests.sendGrad(p).parse(FragmentedStream.of(wire, true, closes, wire.length));
      ByteBuffer content = r.get().grads().get(0).content();
      assertEquals(0, content.alignmentOffset(0, 4), name + ": the kernels get element-aligned memory");
      byte first = content.get(0);
      r.close();
      if (name.equals("ww")) {
        assertEquals(0, p.allocations(), "aligned: no copy");
        // A view: the release (which poisons the network buffer) shows through it.
        assertEquals(FragmentedStream.POISON, content.get(0));
      } else {
        assertEquals(1, p.allocations(), "misaligned: one pooled copy");
        assertEquals(first, content.get(0), "the copy does not alias the network buffer");
      }
    }
  }

  @Test
  void largeFragmentedContentIsCopiedOnceIntoAPooledAlignedBuffer() {
    ReceiveBuffers p = new ReceiveBuffers(64L << 20);
    SendGradsRequest req = SendGradsRequest.newBuilder()
        .addGrads(grad("w", ElementType.FLOAT32, bytes(5 << 20, 5))).build();
    byte[] wire = req.toByteArray();
    for (int round = 0; round < 3; round++) {
      AtomicInteger closes = new AtomicInteger();
      Received<Grads> r = Requests.sendGrads(p).parse(FragmentedStream.of(wire, true, closes, 16384));
      ByteBuffer c = r.get().grads().get(0).content();
      assertTrue(c.isDirect());
      assertEquals(0, c.alignmentOffset(0, 64), "pooled copies are 64-byte aligned");
      assertSameGrads(req, r.get(), "round " + round);
      r.close();
      assertEquals(1, closes.get());
    }
    assertEquals(1, p.allocations(), "the pooled buffer is reused");
  }

  @Test
  void whenGrpcMergedFramesIntoAnArrayTheRestIsCopiedOffHeap() {
    ReceiveBuffers p = new ReceiveBuffers(64L << 20);
    SendGradsRequest req = sample(200_000);
    byte[] wire = req.toByteArray();
    long copiedBefore = Inbound.copiedMessages();
    for (int[] arrays : new int[][] {{3}, {0}, {5, 9}}) {
      AtomicInteger closes = new AtomicInteger();
      Received<Grads> r = Requests.sendGrads(p).parse(
          FragmentedStream.of(wire, true, closes, 16384).withArrays(arrays));
      assertSameGrads(req, r.get(), "array parts " + java.util.Arrays.toString(arrays));
      for (org.pserver.service.Gradient g : r.get().grads()) {
        assertTrue(g.content().isDirect() || g.content().remaining() == 0);
      }
      r.close();
      assertEquals(1, closes.get());
    }
    assertEquals(copiedBefore + 3, Inbound.copiedMessages());
    assertEquals(0, Inbound.open());
  }

  @Test
  void anEmptyMessageIsARequestWithNoGradients() {
    AtomicInteger closes = new AtomicInteger();
    Received<Grads> r = Requests.sendGrads(pool).parse(FragmentedStream.of(new byte[0], true, closes, 1));
    assertTrue(r.get().grads().isEmpty());
    assertEquals("", r.get().trainerId());
    r.close();
    assertEquals(1, closes.get());
  }

  @Test
  void aPlainStreamIsParsedTooByCopying() {
    SendGradsRequest req = sample(1000);
    long before = Inbound.copiedMessages();
    Received<Grads> r = Requests.sendGrads(pool).parse(new ByteArrayInputStream(req.toByteArray()));
    assertSameGrads(req, r.get(), "plain stream");
    r.close();
    assertEquals(before + 1, Inbound.copiedMessages());
  }

  @Test
  void initParamParsesAndMergesARepeatedParam() throws IOException {
    ParameterWithConfig pwc = ParameterWithConfig.newBuilder()
        .setParam(Parameter.newBuilder().setName("w").setElementType(ElementType.FLOAT64).setContent(bytes(8 * 5000, 6)))
        .setConfig(ByteString.copyFromUtf8("cfg"))
        .build();
    AtomicInteger closes = new AtomicInteger();
    Received<org.pserver.service.ParameterWithConfig> r =
        Requests.initParam(pool).parse(FragmentedStream.of(pwc.toByteArray(), true, closes, 1000));
    assertEquals("w", r.get().param().name());
    assertEquals(org.pserver.ElementType.FLOAT64, r.get().param().type());
    assertEquals(pwc.getParam().getContent(), ByteString.copyFrom(r.get().param().content().duplicate()));
    assertEquals("cfg", new String(r.get().config(), java.nio.charset.StandardCharsets.UTF_8));
    r.close();
    assertEquals(1, closes.get());

    // Two occurrences of field 1 merge, as protobuf does: the second sets only the name.
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(pwc.toByteArray());
    CodedOutputStream c = CodedOutputStream.newInstance(out);
    c.writeMessage(1, Parameter.newBuilder().setName("v").build());
    c.flush();
    ParameterWithConfig merged = ParameterWithConfig.parseFrom(out.toByteArray());
    Received<org.pserver.service.ParameterWithConfig> m =
        Requests.initParam(pool).parse(FragmentedStream.of(out.toByteArray(), true, closes, 333));
    assertEquals(merged.getParam().getName(), m.get().param().name());
    assertEquals(merged.getParam().getContent(), ByteString.copyFrom(m.get().param().content().duplicate()));
    m.close();
  }

  private static void assertMalformed(byte[] wire, String what, String detail) {
    AtomicInteger closes = new AtomicInteger();
    ReceiveBuffers p = new ReceiveBuffers(1 << 20);
    Received<?> r = (what.equals("SendGradsRequest") ? Requests.sendGrads(p) : Requests.sendGrad(p))
        .parse(FragmentedStream.of(wire, true, closes, 5));
    PServerException e = assertThrows(PServerException.class, r::get);
    assertEquals(PServerException.Code.INVALID_ARGUMENT, e.code());
    assertTrue(e.getMessage().startsWith("malformed " + what + ": "), e.getMessage());
    assertTrue(e.getMessage().contains(detail), e.getMessage());
    assertTrue(e.getMessage().matches(".*\\(at byte \\d+ of " + wire.length + "\\)"), e.getMessage());
    assertEquals(1, closes.get(), "released at once: " + e.getMessage());
    r.close();
    assertEquals(1, closes.get());
  }

  @Test
  void malformedProtobufIsInvalidArgumentWithAClearMessage() {
    byte[] ok = SendGradsRequest.newBuilder().addGrads(grad("w", ElementType.FLOAT32, bytes(40, 1))).build().toByteArray();
    assertMalformed(java.util.Arrays.copyOf(ok, ok.length - 3), "SendGradsRequest", "runs past the end");
    assertMalformed(new byte[] {0x0A, (byte) 0x80}, "SendGradsRequest", "the message ends inside a field");
    assertMalformed(new byte[] {0x08, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF,
        (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, (byte) 0xFF, 0x01}, "SendGradsRequest", "longer than 10 bytes");
    assertMalformed(new byte[] {0x00, 0x01}, "SendGradsRequest", "invalid tag 0");
    assertMalformed(new byte[] {0x0F, 0x01}, "SendGradsRequest", "invalid wire type 7");
    assertMalformed(new byte[] {0x0C}, "SendGradsRequest", "group end of field 1 without its start");
    assertMalformed(new byte[] {0x0B, 0x08, 0x01}, "SendGradsRequest", "is not closed");
    assertMalformed(new byte[] {0x0A, 0x04, 0x0A, 0x02, (byte) 0xC3, 0x28}, "SendGradsRequest", "not valid UTF-8");
    assertMalformed(new byte[] {0x0A, 0x03, 0x1A, 0x05, 0x00}, "SendGradsRequest", "past the end of the submessage");
    byte[] deep = new byte[2 * 101];
    for (int i = 0; i < 101; i++) {
      deep[i] = 0x53; // start group, field 10
      deep[101 + i] = 0x54;
    }
    assertMalformed(deep, "SendGradsRequest", "nested deeper than 100");
    assertMalformed(new byte[] {0x1A, 0x05, 1, 2}, "Gradient", "runs past the end of the message");
  }

  @Test
  void anUnknownElementTypeIsRefusedAndReleased() {
    byte[] wire = Gradient.newBuilder().setName("w").setElementTypeValue(9).setContent(bytes(8, 1)).build().toByteArray();
    AtomicInteger closes = new AtomicInteger();
    Received<Grads> r = Requests.sendGrad(pool).parse(FragmentedStream.of(wire, true, closes, 4));
    PServerException e = assertThrows(PServerException.class, r::get);
    assertEquals("unknown element type 9 (expected 0..5)", e.getMessage());
    assertEquals(1, closes.get());
  }

  /**
   * Mutated and truncated encodings: whenever protobuf accepts one, so do we with the same values;
   * whenever protobuf refuses one, we refuse it as INVALID_ARGUMENT (never another exception).
   */
  @Test
  void agreesWithProtobufOnMutatedInput() {
    byte[] base = SendGradsRequest.newBuilder()
        .addGrads(grad("a", ElementType.FLOAT32, bytes(12, 1)))
        .addGrads(grad("b", ElementType.INT64, bytes(16, 2)))
        .setTrainerId("t").setSeq(3).setLowWatermark(2).build().toByteArray();
    SplittableRandom rnd = new SplittableRandom(2024);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 3000; i++) {
      byte[] m = base.clone();
      int edits = 1 + rnd.nextInt(3);
      for (int e = 0; e < edits; e++) {
        m[rnd.nextInt(m.length)] = (byte) rnd.nextInt(256);
      }
      if (rnd.nextInt(4) == 0) {
        m = java.util.Arrays.copyOf(m, rnd.nextInt(m.length));
      }
      SendGradsRequest want;
      try {
        want = SendGradsRequest.parseFrom(m);
      } catch (InvalidProtocolBufferException e) {
        want = null;
      }
      AtomicInteger closes = new AtomicInteger();
      Received<Grads> r = Requests.sendGrads(pool).parse(FragmentedStream.of(m, rnd.nextBoolean(), closes, 1 + rnd.nextInt(9)));
      Grads got;
      try {
        got = r.get();
      } catch (PServerException e) {
        assertEquals(PServerException.Code.INVALID_ARGUMENT, e.code());
        if (want != null && !hasBadType(want)) {
          fail("protobuf accepts " + java.util.HexFormat.of().formatHex(m) + " but we refuse it: " + e.getMessage());
        }
        refused++;
        assertEquals(1, closes.get());
        continue;
      }
      if (want == null) {
        fail("protobuf refuses " + java.util.HexFormat.of().formatHex(m) + " but we accept it");
      }
      assertSameGrads(want, got, java.util.HexFormat.of().formatHex(m));
      r.close();
      assertEquals(1, closes.get());
      accepted++;
    }
    assertNotEquals(0, accepted);
    assertNotEquals(0, refused);
    assertEquals(0, Inbound.open());
  }

  private static boolean hasBadType(SendGradsRequest r) {
    for (Gradient g : r.getGradsList()) {
      if (g.getElementTypeValue() < 0 || g.getElementTypeValue() > 5) {
        return true;
      }
    }
    return false;
  }

  @Test
  void theMarshallerOnlyParses() {
    assertThrows(UnsupportedOperationException.class, () -> Requests.sendGrads(pool).stream(null));
  }
}
