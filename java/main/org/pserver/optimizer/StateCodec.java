package org.pserver.optimizer;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;
import org.pserver.ElementType;
import org.pserver.kernels.OffHeap;
import org.pserver.proto.paddle.OptimizerConfig.LrPolicy;
import org.pserver.proto.paddle.OptimizerConfig.Optimizer;

/**
 * The header of the saved state and its checks. The layout is documented (as a table) on {@link
 * ParameterOptimizer}; the offsets below are that table.
 */
final class StateCodec {
  /** "PSOS" (pserver optimizer state) as little-endian bytes. */
  static final int MAGIC = 'P' | 'S' << 8 | 'O' << 16 | 'S' << 24;

  static final int VERSION = 1;
  static final int HEADER_BYTES = 64;
  static final int CHECKSUM_BYTES = 4;

  private static final int OFF_MAGIC = 0;
  private static final int OFF_VERSION = 4;
  private static final int OFF_KIND = 6;
  private static final int OFF_TYPE = 7;
  private static final int OFF_LENGTH = 8;
  private static final int OFF_ELEMENTS = 16;
  private static final int OFF_BUFFERS = 20;
  private static final int OFF_POLICY = 21;
  private static final int OFF_RESERVED = 22;
  private static final int OFF_STEP = 24;
  private static final int OFF_LR = 32;
  private static final int OFF_DECAY_A = 40;
  private static final int OFF_DECAY_B = 48;
  private static final int OFF_CONFIG_LENGTH = 56;
  private static final int OFF_CONFIG_CRC = 60;

  private static final String PREFIX = "invalid optimizer state: ";

  private StateCodec() {}

  /** What the header contributes to a restored optimizer once it has passed every check. */
  record Header(int elements, long step) {}

  /** The total length of a state: header, parameter, state buffers, checksum. */
  static long size(ElementType type, long elements, int buffers) {
    return HEADER_BYTES
        + elements * type.size()
        + buffers * elements * type.stateSize()
        + CHECKSUM_BYTES;
  }

  /** CRC-32C of the config bytes, the config's fingerprint (with its length). */
  static int configChecksum(byte[] config) {
    CRC32C crc = new CRC32C();
    crc.update(config);
    return (int) crc.getValue();
  }

  /** The 64-byte header, little-endian, in a heap buffer at position 0. */
  static ByteBuffer header(
      ElementType type, Settings s, byte[] config, int elements, long step) {
    LearningRatePolicy p = s.policy();
    ByteBuffer h = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    h.putInt(OFF_MAGIC, MAGIC)
        .putShort(OFF_VERSION, (short) VERSION)
        .put(OFF_KIND, (byte) s.rule().kind().getNumber())
        .put(OFF_TYPE, (byte) type.code())
        .putLong(OFF_LENGTH, size(type, elements, s.rule().stateBuffers()))
        .putInt(OFF_ELEMENTS, elements)
        .put(OFF_BUFFERS, (byte) s.rule().stateBuffers())
        .put(OFF_POLICY, (byte) p.kind().getNumber())
        .putShort(OFF_RESERVED, (short) 0)
        .putLong(OFF_STEP, step)
        .putDouble(OFF_LR, p.learningRate())
        .putDouble(OFF_DECAY_A, p.decayA())
        .putDouble(OFF_DECAY_B, p.decayB())
        .putInt(OFF_CONFIG_LENGTH, config.length)
        .putInt(OFF_CONFIG_CRC, configChecksum(config));
    return h;
  }

  /**
   * Checks a header read from a state against the element type and config it is restored for.
   * Runs before any data is read or allocated, so a bad header never leads to a huge allocation.
   *
   * @param h the 64 header bytes, little-endian, at absolute indexes 0..63
   * @throws InvalidStateException naming the first problem
   */
  static Header check(ByteBuffer h, ElementType type, Settings s, byte[] config) {
    int magic = h.getInt(OFF_MAGIC);
    if (magic != MAGIC) {
      byte[] m = new byte[4];
      h.get(OFF_MAGIC, m);
      throw invalid("bad magic " + hex(m) + ", expected \"PSOS\" (50 53 4f 53): not an optimizer"
          + " state, or not at its start");
    }
    int version = Short.toUnsignedInt(h.getShort(OFF_VERSION));
    if (version != VERSION) {
      throw invalid("unsupported format version " + version + " (this build reads version "
          + VERSION + ")");
    }
    if (h.getShort(OFF_RESERVED) != 0) {
      throw invalid("reserved header bytes 22-23 are not zero (corrupted header)");
    }
    int typeCode = Byte.toUnsignedInt(h.get(OFF_TYPE));
    if (typeCode != type.code()) {
      String was = typeCode <= 5 ? ElementType.fromCode(typeCode).toString() : "code " + typeCode;
      throw invalid("the state is for element type " + was + ", the parameter is " + type);
    }
    int kind = Byte.toUnsignedInt(h.get(OFF_KIND));
    Optimizer want = s.rule().kind();
    if (kind != want.getNumber()) {
      Optimizer was = Optimizer.forNumber(kind);
      throw invalid("the state is for optimizer " + (was == null ? "kind " + kind : was)
          + ", the config says " + want);
    }
    int policy = Byte.toUnsignedInt(h.get(OFF_POLICY));
    LrPolicy wantPolicy = s.policy().kind();
    if (policy != wantPolicy.getNumber()) {
      LrPolicy was = LrPolicy.forNumber(policy);
      throw invalid("the state is for learning-rate policy " + (was == null ? "kind " + policy : was)
          + ", the config says " + wantPolicy);
    }
    int configLength = h.getInt(OFF_CONFIG_LENGTH);
    int configCrc = h.getInt(OFF_CONFIG_CRC);
    if (configLength != config.length || configCrc != configChecksum(config)) {
      throw invalid(String.format(
          "the state was saved under another config (%d bytes, CRC-32C %08x); this config has"
              + " %d bytes, CRC-32C %08x", Integer.toUnsignedLong(configLength), configCrc,
          config.length, configChecksum(config)));
    }
    int buffers = Byte.toUnsignedInt(h.get(OFF_BUFFERS));
    if (buffers != s.rule().stateBuffers()) {
      throw invalid("the header says " + buffers + " state buffers, the config's " + want
          + " keeps " + s.rule().stateBuffers());
    }
    int elements = h.getInt(OFF_ELEMENTS);
    if (elements <= 0) {
      throw invalid("element count " + Integer.toUnsignedLong(elements) + " must be > 0");
    }
    long bufferBytes = (long) elements * Math.max(type.size(), type.stateSize());
    if (bufferBytes > OffHeap.MAX_BYTES) {
      throw invalid("element count " + elements + " is too large: " + bufferBytes
          + " bytes per buffer, at most " + OffHeap.MAX_BYTES);
    }
    long declared = h.getLong(OFF_LENGTH);
    long needed = size(type, elements, buffers);
    if (declared > needed) {
      throw invalid("declared length " + declared + " bytes, but " + elements + " elements of "
          + type + " with " + buffers + " state buffers take " + needed + " bytes: "
          + (declared - needed) + " trailing bytes");
    }
    if (declared != needed) {
      throw invalid("declared length " + Long.toUnsignedString(declared) + " bytes, but "
          + elements + " elements of " + type + " with " + buffers + " state buffers take "
          + needed + " bytes");
    }
    long step = h.getLong(OFF_STEP);
    if (step < 0) {
      throw invalid("step counter " + Long.toUnsignedString(step) + " is out of range");
    }
    LearningRatePolicy p = s.policy();
    if (!sameBits(h.getDouble(OFF_LR), p.learningRate())
        || !sameBits(h.getDouble(OFF_DECAY_A), p.decayA())
        || !sameBits(h.getDouble(OFF_DECAY_B), p.decayB())) {
      throw invalid("the learning-rate policy state (lr " + h.getDouble(OFF_LR) + ", a "
          + h.getDouble(OFF_DECAY_A) + ", b " + h.getDouble(OFF_DECAY_B)
          + ") differs from the config's " + p);
    }
    return new Header(elements, step);
  }

  static InvalidStateException invalid(String what) {
    return new InvalidStateException(PREFIX + what);
  }

  private static boolean sameBits(double a, double b) {
    return Double.doubleToRawLongBits(a) == Double.doubleToRawLongBits(b);
  }

  private static String hex(byte[] b) {
    StringBuilder s = new StringBuilder();
    for (byte x : b) {
      s.append(s.length() == 0 ? "" : " ").append(String.format("%02x", x));
    }
    String text = new String(b, StandardCharsets.ISO_8859_1);
    return s + (text.chars().allMatch(c -> c >= 0x20 && c < 0x7f) ? " (\"" + text + "\")" : "");
  }
}
