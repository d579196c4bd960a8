package org.pserver.optimizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.pserver.optimizer.Fixtures.adam;
import static org.pserver.optimizer.Fixtures.constLr;
import static org.pserver.optimizer.Fixtures.le;
import static org.pserver.optimizer.Fixtures.linearLr;
import static org.pserver.optimizer.Fixtures.sgd;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.pserver.ElementType;
import org.pserver.kernels.Kernels;
import org.pserver.kernels.UpdateKernels;
import org.pserver.proto.paddle.OptimizerConfig;

/** Every kind of bad state is rejected with an {@link InvalidStateException} that says why. */
class CorruptStateTest {
  static final ElementType T = ElementType.FLOAT64;
  static final OptimizerConfig.Builder ADAM = adam(constLr(0.1), 0.9, 0.99, 1e-8, 0.01);
  static final byte[] CONFIG = ADAM.build().toByteArray();
  static final UpdateKernels K = Kernels.get();

  ParameterOptimizer original;
  byte[] good;

  @BeforeEach
  void save() {
    original = ParameterOptimizer.create(T, le(T, 1, -2, 3), CONFIG, K);
    original.update(T, le(T, 0.5, 0.25, -1));
    original.update(T, le(T, 0.5, -0.25, 2));
    good = Io.state(original);
    assertEquals(64 + 3 * 8 + 2 * 3 * 8 + 4, good.length);
  }

  private static String rejected(byte[] state, String part) {
    return rejected(T, CONFIG, state, part);
  }

  private static String rejected(ElementType t, byte[] config, byte[] state, String part) {
    InvalidStateException e = assertThrows(InvalidStateException.class,
        () -> Io.restore(t, config, state, K));
    assertTrue(e.getMessage().startsWith("invalid optimizer state: "), e.getMessage());
    assertTrue(e.getMessage().contains(part), "expected '" + part + "' in: " + e.getMessage());
    return e.getMessage();
  }

  /** The state with its trailing CRC-32C recomputed, so only the intended defect remains. */
  private static byte[] resealed(byte[] s) {
    CRC32C crc = new CRC32C();
    crc.update(s, 0, s.length - 4);
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putInt(s.length - 4, (int) crc.getValue());
    return s;
  }

  @Test
  void truncatedAtEveryLength() {
    for (int len = 0; len < good.length; len++) {
      String m = rejected(Arrays.copyOf(good, len), "truncated: the stream ended after " + len);
      if (len >= 64) {
        assertTrue(m.contains("of " + good.length + " bytes"), m);
      }
    }
    rejected(new byte[0], "ended after 0 of the 64 header bytes");
    rejected(Arrays.copyOf(good, 70), "in the weights");
    rejected(Arrays.copyOf(good, 64 + 24 + 30), "in the state buffer 2");
    rejected(Arrays.copyOf(good, good.length - 1), "in the checksum");
  }

  /** Flipping any bit of any byte, header, data or checksum, is caught. */
  @Test
  void everyFlippedByteIsRejected() {
    for (int i = 0; i < good.length; i++) {
      for (int bit : new int[] {0x01, 0x80}) {
        byte[] s = good.clone();
        s[i] ^= (byte) bit;
        String where = i < 4 ? "bad magic" : i < 6 ? "format version" : i >= 64 ? "checksum" : "";
        rejected(s, where);
      }
    }
  }

  @Test
  void checksumMismatchSaysSo() {
    byte[] s = good.clone();
    s[64 + 3] ^= 0x10; // a weight
    rejected(s, "checksum mismatch: stored CRC-32C");
    s = good.clone();
    s[s.length - 1] ^= 0x10; // the checksum itself
    rejected(s, "checksum mismatch");
  }

  @Test
  void badMagicAndVersion() {
    byte[] s = good.clone();
    s[0] = 'X';
    rejected(resealed(s), "bad magic 58 53 4f 53 (\"XSOS\")");
    s = good.clone();
    s[4] = 2;
    rejected(resealed(s), "unsupported format version 2 (this build reads version 1)");
    s = good.clone();
    s[22] = 1;
    rejected(resealed(s), "reserved header bytes");
    byte[] junk = new byte[200];
    new SplittableRandom(7).nextBytes(junk);
    rejected(junk, "bad magic");
  }

  @Test
  void wrongElementType() {
    rejected(ElementType.FLOAT32, CONFIG, good, "the state is for element type FLOAT64, the parameter is FLOAT32");
    rejected(ElementType.INT64, CONFIG, good, "element type FLOAT64, the parameter is INT64");
    byte[] s = good.clone();
    s[7] = 9;
    rejected(resealed(s), "element type code 9");
  }

  @Test
  void wrongConfig() {
    // another algorithm
    byte[] sgd = sgd(constLr(0.1), 0.9, 0, false).build().toByteArray();
    rejected(T, sgd, good, "the state is for optimizer Adam, the config says SGD");
    // another policy
    byte[] linear = ADAM.clone().setLrPolicy(OptimizerConfig.LrPolicy.Linear)
        .setLinearLr(linearLr(0.1, 0, 0).getLinearLr()).build().toByteArray();
    rejected(T, linear, good, "learning-rate policy Const, the config says Linear");
    // same algorithm and policy, another hyper-parameter
    byte[] lr = adam(constLr(0.2), 0.9, 0.99, 1e-8, 0.01).build().toByteArray();
    rejected(T, lr, good, "the state was saved under another config");
    // the same meaning in other bytes: clip_norm 0 written explicitly. Fingerprints are of bytes.
    byte[] same = ADAM.clone().setClipNorm(0).build().toByteArray();
    assertFalse(Arrays.equals(CONFIG, same));
    rejected(T, same, good, "another config (" + CONFIG.length + " bytes");
    // an invalid config is a config error, not a state error
    OptimizerException e = assertThrows(OptimizerException.class,
        () -> Io.restore(T, new byte[] {0x08, 0x09}, good, K));
    assertFalse(e instanceof InvalidStateException);
  }

  @Test
  void declaredLengthMustMatchTheContent() {
    // 8 bytes of garbage inside the declared length, before a valid checksum
    byte[] s = new byte[good.length + 8];
    System.arraycopy(good, 0, s, 0, good.length - 4);
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putLong(8, s.length);
    rejected(resealed(s), "8 trailing bytes");
    // a declared length too short for the element count
    s = good.clone();
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putLong(8, good.length - 8);
    rejected(resealed(s), "declared length " + (good.length - 8) + " bytes, but 3 elements");
    // an element count that disagrees with the declared length
    s = good.clone();
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putInt(16, 4);
    rejected(resealed(s), "4 elements of FLOAT64 with 2 state buffers take");
    s = good.clone();
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putInt(16, 0);
    rejected(resealed(s), "element count 0 must be > 0");
    s = good.clone();
    s[20] = 3;
    rejected(resealed(s), "the header says 3 state buffers, the config's Adam keeps 2");
  }

  @Test
  void badStepAndPolicyState() {
    byte[] s = good.clone();
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putLong(24, -1);
    rejected(resealed(s), "step counter 18446744073709551615 is out of range");
    s = good.clone();
    ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN).putDouble(32, 0.3);
    rejected(resealed(s), "learning-rate policy state (lr 0.3");
  }

  @Test
  void failedRestoresChangeNothing() {
    byte[] s = good.clone();
    s[100] ^= 1;
    for (int i = 0; i < 3; i++) {
      assertThrows(InvalidStateException.class, () -> Io.restore(T, CONFIG, s, K));
    }
    assertArrayEquals(good, Io.state(original));
    assertEquals(2, original.step());
  }

  @Test
  void nonBlockingChannelIsAnIoError() {
    ReadableByteChannel zero = new ReadableByteChannel() {
      @Override
      public int read(ByteBuffer dst) {
        return 0;
      }

      @Override
      public boolean isOpen() {
        return true;
      }

      @Override
      public void close() {}
    };
    IOException e = assertThrows(IOException.class,
        () -> ParameterOptimizer.readState(T, CONFIG, zero, K));
    assertTrue(e.getMessage().contains("blocking"), e.getMessage());
  }
}
