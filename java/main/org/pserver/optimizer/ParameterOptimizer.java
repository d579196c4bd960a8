package org.pserver.optimizer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.Objects;
import java.util.zip.CRC32C;
import org.pserver.ElementType;
import org.pserver.kernels.OffHeap;
import org.pserver.kernels.UpdateKernels;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The optimizer of one parameter: its config, its weights and optimizer state off-heap, a step
 * counter, and the exact save/restore of all of it.
 *
 * <h2>Memory</h2>
 *
 * The weights and every state buffer are direct, native-order, 64-byte aligned {@link ByteBuffer}s
 * that the kernels update in place. State buffers are sized to the parameter: {@link
 * ElementType#stateSize()} bytes per element (float for FLOAT32, double for every other type). SGD
 * keeps one momentum buffer only when {@code momentum != 0}; Adam keeps m and v; Adagrad
 * accum_gradient; Adadelta accum_gradient, accum_delta and update_delta. Nothing is freed eagerly:
 * the off-heap memory is released when the optimizer (and every view obtained from {@link
 * #weights()}) becomes unreachable and the garbage collector clears the buffers. A service that
 * drops many large parameters should budget {@code -XX:MaxDirectMemorySize} for that delay.
 * Gradients that cannot be used in place are copied into a per-thread direct scratch buffer, kept
 * for reuse up to 16 MiB per thread.
 *
 * <h2>One update</h2>
 *
 * {@link #update} checks the gradient's type and length, then: the step counter becomes {@code n =
 * step() + 1}; the learning-rate policy gives the rate for {@code n}; with {@code clip_norm > 0},
 * the kernels' {@code sumOfSquares} gives the squared L2 norm of the value-clipped gradient (a
 * second, scaled pass if that sum overflows) and, if the norm exceeds {@code clip_norm}, the
 * kernel scales every element by {@code clip_norm / norm}; {@code clip_value > 0} clips each
 * element to {@code [-clip_value, clip_value]} first. Neither clip writes the gradient. Then one
 * kernel call updates weights and state. Adam's rate is bias-corrected in double with {@code t =
 * n}: {@code lr * sqrt(1 - beta2^t) / (1 - beta1^t)}. Integer weights take the step computed in
 * double, rounded half to even and saturated to the type's range ({@code
 * native/include/pskernels.h}); so SGD with lr 1 adds integers exactly, and a step smaller than
 * 0.5 leaves an integer weight where it is.
 *
 * <p>Precision: FLOAT32 weights and state are updated in float arithmetic (every operation rounds
 * to float, with float coefficients), whereas the seed evaluated each float32 expression in double
 * and rounded once per assignment. So float32 results can differ from the seed's by a few float
 * ulps per step (a deliberate choice: twice the SIMD lanes, and the Java kernels reproduce it bit
 * for bit). FLOAT64 and the integer types compute in double.
 *
 * <h2>Threads</h2>
 *
 * Not thread-safe. The caller serializes every call on one optimizer ({@link #update}, {@link
 * #copyWeightsTo}, {@link #writeState}, reading {@link #weights()}), e.g. with a per-parameter lock.
 * Different optimizers are independent.
 *
 * <h2>Saved state (format version 1)</h2>
 *
 * {@link #writeState} writes, and {@link #readState} reads, this little-endian binary encoding.
 * It restores weights, every accumulator, the step counter and the policy state bit for bit.
 *
 * <table>
 *   <caption>State encoding; E = element count, S = element size, T = state element size</caption>
 *   <tr><th>offset</th><th>bytes</th><th>field</th></tr>
 *   <tr><td>0</td><td>4</td><td>magic: ASCII {@code "PSOS"} ({@code 50 53 4f 53})</td></tr>
 *   <tr><td>4</td><td>2</td><td>format version: 1</td></tr>
 *   <tr><td>6</td><td>1</td><td>optimizer: the config's enum number (1 SGD, 2 Adadelta, 3
 *       Adagrad, 4 Adam)</td></tr>
 *   <tr><td>7</td><td>1</td><td>element type: {@link ElementType#code()} (0..5)</td></tr>
 *   <tr><td>8</td><td>8</td><td>total length of this state in bytes, header and checksum
 *       included (= {@link #stateSize()})</td></tr>
 *   <tr><td>16</td><td>4</td><td>E, the element count (&gt; 0)</td></tr>
 *   <tr><td>20</td><td>1</td><td>number of state buffers (SGD 0 or 1, Adam 2, Adagrad 1,
 *       Adadelta 3)</td></tr>
 *   <tr><td>21</td><td>1</td><td>learning-rate policy: 0 Const, 1 Linear</td></tr>
 *   <tr><td>22</td><td>2</td><td>reserved, 0</td></tr>
 *   <tr><td>24</td><td>8</td><td>step counter: gradients applied (the seed's {@code
 *       num_sample_passed}, there a double)</td></tr>
 *   <tr><td>32</td><td>8</td><td>policy state: learning_rate (IEEE 754 double)</td></tr>
 *   <tr><td>40</td><td>8</td><td>policy state: lr_decay_a (double; 0 for Const)</td></tr>
 *   <tr><td>48</td><td>8</td><td>policy state: lr_decay_b (double; 0 for Const)</td></tr>
 *   <tr><td>56</td><td>4</td><td>length of the config bytes</td></tr>
 *   <tr><td>60</td><td>4</td><td>CRC-32C of the config bytes</td></tr>
 *   <tr><td>64</td><td>E*S</td><td>the weights, raw elements</td></tr>
 *   <tr><td>64+E*S</td><td>E*T each</td><td>the state buffers, raw elements, in this order: SGD
 *       momentum; Adam m, v; Adagrad accum_gradient; Adadelta accum_gradient, accum_delta,
 *       update_delta</td></tr>
 *   <tr><td>length-4</td><td>4</td><td>CRC-32C of every byte before it</td></tr>
 * </table>
 *
 * <p>The config fingerprint is over the config <em>bytes</em>: a state restores only under the
 * very bytes it was saved with, even if another encoding would mean the same config. The state
 * carries no config itself; the caller stores the config next to it. The seed's state was a
 * protobuf holding 6-significant-digit decimal text, which is lossy and not read here.
 */
public final class ParameterOptimizer {
  private static final Logger LOG = LoggerFactory.getLogger(ParameterOptimizer.class);

  /**
   * Gradients that must be copied (heap, or direct but misaligned) go through a per-thread
   * scratch buffer that is kept for reuse up to this size; larger ones get a buffer of their own
   * for the call.
   */
  static final int SCRATCH_REUSE_LIMIT = 16 << 20;

  /** Bytes written per slice by {@link #writeState}. */
  private static final int CHUNK = 1 << 20;

  private static final ThreadLocal<ByteBuffer> SCRATCH = new ThreadLocal<>();

  /** The scale of the second {@code sumOfSquares} pass when the first overflows (see update). */
  static final double OVERFLOW_SCALE = 0x1p-600;

  private final ElementType type;
  private final int elements;
  private final byte[] config;
  private final Settings settings;
  private final UpdateKernels kernels;
  private final ByteBuffer param;
  private final ByteBuffer[] state;
  private long step;

  private ParameterOptimizer(
      ElementType type,
      int elements,
      byte[] config,
      Settings settings,
      UpdateKernels kernels,
      ByteBuffer param,
      ByteBuffer[] state,
      long step) {
    this.type = type;
    this.elements = elements;
    this.config = config;
    this.settings = settings;
    this.kernels = kernels;
    this.param = param;
    this.state = state;
    this.step = step;
  }

  /**
   * Creates the optimizer of a new parameter.
   *
   * @param type the element type of the parameter and of every gradient
   * @param content the initial weights: little-endian elements of {@code type}, from position to
   *     limit; heap or direct. Copied; the buffer's position is not moved.
   * @param config a serialized {@code paddle.OptimizerConfig}; empty means SGD with a constant
   *     learning rate of 1.0. Copied. See {@link OptimizerConfigs} for what is rejected.
   * @param kernels the update kernels to run, normally {@code Kernels.get()}
   * @return a new optimizer at step 0 with zeroed state
   * @throws OptimizerException for an invalid config, empty content, a content length that is not
   *     a multiple of {@code type.size()}, or a parameter too large for int-indexed buffers
   * @throws NullPointerException if an argument is null
   */
  public static ParameterOptimizer create(
      ElementType type, ByteBuffer content, byte[] config, UpdateKernels kernels) {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(content, "content");
    Objects.requireNonNull(config, "config");
    Objects.requireNonNull(kernels, "kernels");
    Settings settings = OptimizerConfigs.settings(config);
    int bytes = content.remaining();
    if (bytes == 0) {
      throw new OptimizerException("empty parameter: the content has no bytes");
    }
    if (bytes % type.size() != 0) {
      throw new OptimizerException("content length " + bytes + " bytes is not a multiple of the "
          + type + " element size " + type.size());
    }
    int elements = bytes / type.size();
    checkSize(type, elements);
    ByteBuffer param = Buffers.allocate(bytes);
    param.put(0, content, content.position(), bytes);
    Buffers.littleEndianToNative(param, 0, bytes, type.size());
    ParameterOptimizer o = new ParameterOptimizer(type, elements, config.clone(), settings,
        kernels, param, newState(type, elements, settings), 0);
    LOG.debug("created {}", o);
    return o;
  }

  private static void checkSize(ElementType type, int elements) {
    long perBuffer = (long) elements * Math.max(type.size(), type.stateSize());
    if (perBuffer > OffHeap.MAX_BYTES) {
      throw new OptimizerException("parameter too large: " + elements + " elements of " + type
          + " need " + perBuffer + " bytes per weight or state buffer, at most "
          + OffHeap.MAX_BYTES + " are supported");
    }
  }

  private static ByteBuffer[] newState(ElementType type, int elements, Settings settings) {
    ByteBuffer[] s = new ByteBuffer[settings.rule().stateBuffers()];
    for (int i = 0; i < s.length; i++) {
      s[i] = Buffers.allocate(elements * type.stateSize());
    }
    return s;
  }

  /** The element type of the parameter and of every gradient. */
  public ElementType type() {
    return type;
  }

  /** The number of elements of the parameter (at least 1). */
  public int elements() {
    return elements;
  }

  /** The parameter's size in bytes: {@code elements() * type().size()}. */
  public int byteLength() {
    return elements * type.size();
  }

  /** A copy of the config bytes exactly as given. */
  public byte[] config() {
    return config.clone();
  }

  /** The number of gradients applied so far (the seed's {@code num_sample_passed}). */
  public long step() {
    return step;
  }

  /**
   * Applies one gradient in place (see the class comment for the order of operations).
   *
   * <p>Checks the type and the length before touching anything; on failure nothing changes. Does
   * <em>not</em> reject NaN or infinite elements: the service checks those first with {@link
   * UpdateKernels#allFinite}. A NaN element makes the L2 norm NaN, and then {@code clip_norm} does
   * not scale; an infinite element makes it infinite, and the gradient scales to 0 (its infinite
   * elements to NaN). A finite float64 gradient whose squared norm overflows a double is still
   * scaled to {@code clip_norm}: the norm is then taken a second time, scaled.
   *
   * <p>Trap: the gradient must not share memory with this optimizer's buffers (e.g. a view from
   * {@link #weights()}); the kernels treat their buffers as non-overlapping.
   *
   * @param gradType must equal {@link #type()}
   * @param gradient little-endian elements of {@code type()}, exactly {@link #byteLength()} bytes
   *     from position to limit. Only read; its position is not moved. A direct buffer whose
   *     position is aligned to the element size is used in place (on little-endian machines); any
   *     other buffer is first copied once into direct memory.
   * @throws OptimizerException naming both values if the type or the byte length differ
   * @throws NullPointerException if an argument is null
   */
  public void update(ElementType gradType, ByteBuffer gradient) {
    Objects.requireNonNull(gradType, "gradType");
    Objects.requireNonNull(gradient, "gradient");
    if (gradType != type) {
      throw new OptimizerException(
          "gradient element type " + gradType + " does not match the parameter's type " + type);
    }
    if (gradient.remaining() != byteLength()) {
      throw new OptimizerException("gradient has " + gradient.remaining() + " bytes, the "
          + type + " parameter has " + byteLength() + " (" + elements + " elements)");
    }
    ByteBuffer g = kernelView(gradient);
    long n = step + 1;
    double lr = settings.policy().rate(n);
    double clipValue = settings.clipValue();
    double gradScale = settings.clipNorm() > 0
        ? normClipScale(kernels, type, g, elements, clipValue, settings.clipNorm())
        : 1;
    settings.rule().apply(kernels, type, param, g, state, elements, n, lr, gradScale, clipValue);
    step = n;
  }

  /**
   * The factor that scales the value-clipped gradient {@code g} to L2 norm {@code clipNorm}, or 1
   * if its norm is not above it (or is NaN).
   *
   * <p>The norm comes from the kernels' {@code sumOfSquares}. For FLOAT64 that sum overflows to
   * +Inf once the norm passes about 1.3e154, although every element is finite; {@code clipNorm /
   * Inf} would then be 0 and silently discard the gradient. So an infinite sum is taken again
   * with every element scaled by {@link #OVERFLOW_SCALE} (2^-600; the kernels scale after
   * clipping, in double), which keeps the sum of any finite gradient below 2^880, and the factor
   * is computed in those units: powers of two, so the only extra rounding is the loss of elements
   * below 2^89, negligible next to a norm of at least 2^511. A gradient with an infinite element
   * still gets 0 (and its infinite elements NaN).
   */
  static double normClipScale(UpdateKernels kernels, ElementType type, ByteBuffer g, int elements,
      double clipValue, double clipNorm) {
    double sum = kernels.sumOfSquares(type, g, 0, elements, clipValue);
    if (sum == Double.POSITIVE_INFINITY) {
      double scaledNorm = Math.sqrt(
          kernels.sumOfSquares(type, g, 0, elements, clipValue, OVERFLOW_SCALE));
      // norm = scaledNorm / OVERFLOW_SCALE; compared and divided without forming it (it may
      // overflow too: sqrt(n) * Double.MAX_VALUE)
      return scaledNorm > clipNorm * OVERFLOW_SCALE
          ? clipNorm / scaledNorm * OVERFLOW_SCALE
          : 1;
    }
    double norm = Math.sqrt(sum);
    return norm > clipNorm ? clipNorm / norm : 1;
  }

  /** The gradient as the kernels need it: direct, native order, aligned, starting at index 0. */
  private ByteBuffer kernelView(ByteBuffer gradient) {
    int bytes = byteLength();
    ByteBuffer g = gradient.slice().order(ByteOrder.nativeOrder());
    if (g.isDirect()
        && Buffers.NATIVE_LITTLE_ENDIAN
        && g.alignmentOffset(0, type.size()) == 0) {
      return g;
    }
    ByteBuffer copy = scratch(bytes);
    copy.put(0, g, 0, bytes);
    Buffers.littleEndianToNative(copy, 0, bytes, type.size());
    return copy;
  }

  private static ByteBuffer scratch(int bytes) {
    if (bytes > SCRATCH_REUSE_LIMIT) {
      return Buffers.allocate(bytes);
    }
    ByteBuffer s = SCRATCH.get();
    if (s == null || s.capacity() < bytes) {
      int size = Math.min(SCRATCH_REUSE_LIMIT, Math.max(4096, Integer.highestOneBit(bytes - 1) << 1));
      s = Buffers.allocate(size);
      SCRATCH.set(s);
    }
    return s;
  }

  /**
   * Copies the current weights, {@link #byteLength()} little-endian bytes, into {@code dst} at its
   * position and advances the position by that much.
   *
   * @throws java.nio.BufferOverflowException if {@code dst} has fewer bytes remaining (nothing is
   *     written)
   * @throws java.nio.ReadOnlyBufferException if {@code dst} is read-only
   */
  public void copyWeightsTo(ByteBuffer dst) {
    int at = dst.position();
    dst.put(param.duplicate().clear());
    Buffers.littleEndianToNative(dst, at, at + byteLength(), type.size());
  }

  /**
   * Copies weights bytes {@code [from, from + dst.remaining())}, little-endian, into {@code dst} at
   * its position and advances the position by that much: a piece of {@link #copyWeightsTo(ByteBuffer)}
   * for callers that stream the weights out in chunks (under the caller's lock for all the chunks,
   * so that together they are one consistent copy).
   *
   * @throws IndexOutOfBoundsException if the range is not within the weights; nothing is written
   * @throws java.nio.ReadOnlyBufferException if {@code dst} is read-only
   */
  public void copyWeightsTo(int from, ByteBuffer dst) {
    int at = dst.position();
    int len = dst.remaining();
    Objects.checkFromIndexSize(from, len, byteLength());
    if (!Buffers.NATIVE_LITTLE_ENDIAN && (from % type.size() != 0 || len % type.size() != 0)) {
      throw new IllegalArgumentException("on a big-endian machine, chunks must hold whole elements");
    }
    dst.put(at, param, from, len);
    Buffers.littleEndianToNative(dst, at, at + len, type.size());
    dst.position(at + len);
  }

  /**
   * A read-only view of the live weights: position 0, limit {@link #byteLength()}, native byte
   * order (little-endian on every platform pserver supports).
   *
   * <p>Trap: this is not a snapshot. Its content changes with every {@link #update}, and reading
   * it while an update runs gives a mix of old and new elements. Use {@link #copyWeightsTo} under
   * the caller's lock for a consistent copy. Holding the view keeps the weights' memory alive.
   */
  public ByteBuffer weights() {
    return param.asReadOnlyBuffer().clear().order(ByteOrder.nativeOrder());
  }

  /** The exact number of bytes {@link #writeState} writes (and {@link #readState} reads). */
  public long stateSize() {
    return StateCodec.size(type, elements, state.length);
  }

  /**
   * Streams the complete state in the format of the class comment: {@link #stateSize()} bytes.
   *
   * <p>The weights and state buffers go to {@code out} directly from off-heap memory, in slices
   * of 1 MiB, with no second in-memory copy. The caller must keep updates out while this runs
   * (otherwise the state is torn, and its checksum may not match what was written).
   *
   * @param out a blocking channel; it is not closed
   * @throws IOException from the channel; then an unknown prefix of the state was written
   */
  public void writeState(WritableByteChannel out) throws IOException {
    Objects.requireNonNull(out, "out");
    CRC32C crc = new CRC32C();
    ByteBuffer header = StateCodec.header(type, settings, config, elements, step);
    crc.update(header.duplicate());
    Buffers.writeFully(out, header);
    ByteBuffer swapped = Buffers.NATIVE_LITTLE_ENDIAN ? null : ByteBuffer.allocate(CHUNK);
    writeBuffer(out, crc, param, type.size(), swapped);
    for (ByteBuffer s : state) {
      writeBuffer(out, crc, s, type.stateSize(), swapped);
    }
    ByteBuffer checksum = ByteBuffer.allocate(StateCodec.CHECKSUM_BYTES)
        .order(ByteOrder.LITTLE_ENDIAN)
        .putInt(0, (int) crc.getValue());
    Buffers.writeFully(out, checksum);
  }

  /** Writes one off-heap buffer as little-endian bytes, slice by slice, adding it to the CRC. */
  private static void writeBuffer(WritableByteChannel out, CRC32C crc, ByteBuffer b, int elemSize,
      ByteBuffer swapped) throws IOException {
    for (int at = 0; at < b.capacity(); at += CHUNK) {
      ByteBuffer slice = b.slice(at, Math.min(CHUNK, b.capacity() - at));
      if (swapped != null) {
        int len = slice.remaining();
        swapped.clear().put(slice).flip();
        Buffers.reverseElements(swapped, 0, len, elemSize);
        slice = swapped;
      }
      crc.update(slice.duplicate());
      Buffers.writeFully(out, slice);
    }
  }

  /**
   * Restores an optimizer from a state written by {@link #writeState}.
   *
   * <p>Reads the 64-byte header, checks it against {@code type} and {@code config} before
   * allocating anything, then reads the rest into new off-heap buffers and verifies the checksum.
   * On success exactly {@link #stateSize()} bytes have been read from {@code in}: states can be
   * concatenated in one stream. The result is a fresh optimizer; nothing else changes, and on
   * failure nothing is returned (the channel's position is then unspecified).
   *
   * @param type the parameter's element type; must be the one the state was saved with
   * @param config the config bytes the state was saved under (compared by length and CRC-32C)
   * @param in a blocking channel positioned at the start of the state; it is not closed
   * @param kernels the kernels the restored optimizer runs with (any implementation: both give the
   *     same bits)
   * @return a new optimizer with the saved weights, state and step
   * @throws OptimizerException for an invalid config
   * @throws InvalidStateException if the state is truncated, has a bad magic or format version,
   *     fails its checksum, was saved for another optimizer, element type, policy or config, or
   *     declares a length that does not match its content (e.g. trailing bytes)
   * @throws IOException from the channel, or if it is non-blocking
   */
  public static ParameterOptimizer readState(
      ElementType type, byte[] config, ReadableByteChannel in, UpdateKernels kernels)
      throws IOException {
    Objects.requireNonNull(type, "type");
    Objects.requireNonNull(config, "config");
    Objects.requireNonNull(in, "in");
    Objects.requireNonNull(kernels, "kernels");
    Settings settings = OptimizerConfigs.settings(config);
    CRC32C crc = new CRC32C();

    ByteBuffer header = ByteBuffer.allocate(StateCodec.HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    int got = Buffers.readFully(in, header);
    if (got < StateCodec.HEADER_BYTES) {
      throw StateCodec.invalid("truncated: the stream ended after " + got + " of the "
          + StateCodec.HEADER_BYTES + " header bytes");
    }
    crc.update(header.array(), 0, StateCodec.HEADER_BYTES);
    StateCodec.Header h = StateCodec.check(header, type, settings, config);
    long total = StateCodec.size(type, h.elements(), settings.rule().stateBuffers());
    long[] consumed = {StateCodec.HEADER_BYTES};

    ByteBuffer param = Buffers.allocate(h.elements() * type.size());
    readBuffer(in, crc, param, type.size(), "weights", consumed, total);
    ByteBuffer[] state = new ByteBuffer[settings.rule().stateBuffers()];
    for (int i = 0; i < state.length; i++) {
      state[i] = Buffers.allocate(h.elements() * type.stateSize());
      readBuffer(in, crc, state[i], type.stateSize(), "state buffer " + (i + 1), consumed, total);
    }
    ByteBuffer checksum =
        ByteBuffer.allocate(StateCodec.CHECKSUM_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    got = Buffers.readFully(in, checksum);
    if (got < StateCodec.CHECKSUM_BYTES) {
      throw truncated(consumed[0] + got, total, "the checksum");
    }
    int stored = checksum.getInt(0);
    int computed = (int) crc.getValue();
    if (stored != computed) {
      throw StateCodec.invalid(String.format(
          "checksum mismatch: stored CRC-32C %08x, computed %08x (corrupted data)", stored,
          computed));
    }
    ParameterOptimizer o = new ParameterOptimizer(type, h.elements(), config.clone(), settings,
        kernels, param, state, h.step());
    LOG.debug("restored {}", o);
    return o;
  }

  private static void readBuffer(ReadableByteChannel in, CRC32C crc, ByteBuffer b, int elemSize,
      String what, long[] consumed, long total) throws IOException {
    int got = Buffers.readFully(in, b.clear());
    if (got < b.capacity()) {
      throw truncated(consumed[0] + got, total, "the " + what);
    }
    consumed[0] += got;
    crc.update(b.flip());
    Buffers.littleEndianToNative(b, 0, b.capacity(), elemSize);
    b.clear();
  }

  private static InvalidStateException truncated(long got, long total, String where) {
    return StateCodec.invalid("truncated: the stream ended after " + got + " of " + total
        + " bytes, in " + where);
  }

  /**
   * A one-line description for logs: algorithm and hyper-parameters, policy, clips, type, size,
   * step and kernels.
   */
  public String describe() {
    return settings + "; " + elements + " x " + type + "; step " + step + "; kernels "
        + kernels.name();
  }

  @Override
  public String toString() {
    return "ParameterOptimizer[" + describe() + "]";
  }
}
