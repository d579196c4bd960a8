package org.pserver.kernels;

import java.lang.reflect.Field;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import org.bytedeco.javacpp.Pointer;
import org.slf4j.LoggerFactory;

/**
 * FOR INTERNAL USE ONLY: the base address of a direct buffer. Only {@link NativeKernels} uses it,
 * after the native library (which carries JavaCPP's JNI helpers) has loaded.
 *
 * <p>Why not just JNI: a kernel call passes up to five buffers, and one {@code
 * GetDirectBufferAddress} JNI call per buffer costs more than the whole call budget for small
 * updates. So the address is read from {@code java.nio.Buffer.address} with {@code
 * sun.misc.Unsafe} (module jdk.unsupported; the way Netty does it), checked once against JNI at
 * start-up; if that is unavailable or disagrees, every call falls back to JNI.
 *
 * <p>Trap: on JDK 24 and later the first use of these {@code Unsafe} methods prints a one-time
 * deprecation warning unless {@code --sun-misc-unsafe-memory-access=allow} is given; gRPC's
 * Netty and protobuf print the same warning there anyway.
 */
final class BufferAddress extends Pointer {
  @SuppressWarnings("removal")
  private static final sun.misc.Unsafe UNSAFE;

  private static final long ADDRESS_FIELD;

  static {
    sun.misc.Unsafe u = null;
    long off = -1;
    try {
      Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
      f.setAccessible(true);
      sun.misc.Unsafe candidate = (sun.misc.Unsafe) f.get(null);
      @SuppressWarnings("removal")
      long o = candidate.objectFieldOffset(Buffer.class.getDeclaredField("address"));
      ByteBuffer probe = ByteBuffer.allocateDirect(64);
      ByteBuffer slice = probe.slice(8, 16);
      @SuppressWarnings("removal")
      boolean agrees =
          candidate.getLong(probe, o) == getDirectBufferAddress(probe)
              && candidate.getLong(slice, o) == getDirectBufferAddress(slice);
      if (agrees) {
        u = candidate;
        off = o;
      } else {
        LoggerFactory.getLogger(BufferAddress.class)
            .warn("Buffer.address read disagrees with JNI; using JNI for buffer addresses");
      }
    } catch (Throwable t) {
      LoggerFactory.getLogger(BufferAddress.class)
          .debug("no Unsafe buffer-address read ({}); using JNI", t.toString());
    }
    UNSAFE = u;
    ADDRESS_FIELD = off;
  }

  private BufferAddress() {}

  @SuppressWarnings("removal")
  static long of(Buffer buffer) {
    return UNSAFE != null ? UNSAFE.getLong(buffer, ADDRESS_FIELD) : getDirectBufferAddress(buffer);
  }
}
