package org.pserver.rpc;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.pserver.service.PServerException;

/**
 * Reads the protobuf wire format from one message that arrived as a sequence of buffers (the
 * network buffers gRPC received it in), without copying it: every position is an absolute offset
 * into the concatenation of the buffers, and a length-delimited field can be looked at in place
 * ({@link #contiguous}) or copied straight to its destination ({@link #copyTo}).
 *
 * <p>Only forward reading. Every malformed input (a truncated or over-long varint, a length past
 * the end of the enclosing message, field number 0, wire types 6 and 7, an unmatched group end,
 * invalid UTF-8 in a string) throws {@link PServerException} INVALID_ARGUMENT whose message starts
 * with {@code "malformed <message name>: "} and ends with the byte offset. Fields are read with
 * protobuf's rules: unknown fields and fields of an unexpected wire type are skipped.
 *
 * <p>The buffers are only read (absolute gets); their positions and limits are never changed.
 */
final class WireInput {
  static final int VARINT = 0;
  static final int FIXED64 = 1;
  static final int LEN = 2;
  static final int START_GROUP = 3;
  static final int END_GROUP = 4;
  static final int FIXED32 = 5;

  /** Protobuf-java's default nesting limit. */
  private static final int MAX_DEPTH = 100;

  private static final ThreadLocal<CharsetDecoder> UTF8 =
      ThreadLocal.withInitial(() -> StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT));

  private final ByteBuffer[] segs;
  /** Index in segs[i] of its first byte of data. */
  private final int[] base;
  /** Absolute offset of segs[i]'s first byte; starts[segs.length] is the size. */
  private final int[] starts;
  private final String what;
  private int pos;
  private int seg;
  private int limit;
  private int nested;

  WireInput(List<ByteBuffer> buffers, String what) {
    int n = buffers.size();
    this.segs = new ByteBuffer[n];
    this.base = new int[n];
    this.starts = new int[n + 1];
    long size = 0;
    for (int i = 0; i < n; i++) {
      ByteBuffer b = buffers.get(i);
      segs[i] = b;
      base[i] = b.position();
      starts[i] = (int) size;
      size += b.remaining();
      if (size > Integer.MAX_VALUE) {
        throw new IllegalArgumentException("message larger than 2 GiB");
      }
    }
    starts[n] = (int) size;
    this.what = what;
    this.limit = (int) size;
  }

  /** The message's size in bytes. */
  int size() {
    return starts[segs.length];
  }

  int position() {
    return pos;
  }

  /** True at the end of the current (sub)message. */
  boolean atLimit() {
    return pos >= limit;
  }

  /** Enters a submessage of {@code length} bytes at the current position; returns the old limit. */
  int pushLimit(int length) {
    int old = limit;
    limit = pos + length;
    nested++;
    return old;
  }

  void popLimit(int old) {
    limit = old;
    nested--;
  }

  private String enclosing() {
    return nested == 0 ? "message" : "submessage";
  }

  PServerException malformed(String detail) {
    return malformed(detail, pos);
  }

  private PServerException malformed(String detail, int at) {
    return new PServerException(
        PServerException.Code.INVALID_ARGUMENT,
        "malformed " + what + ": " + detail + " (at byte " + at + " of " + size() + ")");
  }

  private byte readByte() {
    if (pos >= limit) {
      throw malformed(nested == 0 ? "the message ends inside a field" : "a field runs past the end of its submessage");
    }
    while (pos >= starts[seg + 1]) {
      seg++;
    }
    byte b = segs[seg].get(base[seg] + (pos - starts[seg]));
    pos++;
    return b;
  }

  long readVarint() {
    int at = pos;
    long v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      byte b = readByte();
      v |= (long) (b & 0x7f) << shift;
      if (b >= 0) {
        return v;
      }
    }
    throw malformed("a varint longer than 10 bytes", at);
  }

  /** The next tag (field number << 3 | wire type), checked. */
  int readTag() {
    int at = pos;
    long tag = readVarint();
    if (tag >>> 3 == 0 || tag > 0xFFFFFFFFL) {
      throw malformed("invalid tag " + Long.toUnsignedString(tag), at);
    }
    if ((tag & 7) > FIXED32) {
      throw malformed("invalid wire type " + (tag & 7) + " of field " + (tag >>> 3), at);
    }
    return (int) tag;
  }

  /** A length prefix, checked against what is left of the current (sub)message. */
  int readLength() {
    int at = pos;
    long len = readVarint();
    if (len < 0 || len > limit - pos) {
      throw malformed("a length of " + Long.toUnsignedString(len) + " bytes runs past the end of the "
          + enclosing(), at);
    }
    return (int) len;
  }

  void skip(int length) {
    if (length > limit - pos) {
      throw malformed("a field runs past the end of the " + enclosing());
    }
    pos += length;
  }

  /** Skips the value of a field whose tag was just read. */
  void skipField(int tag) {
    skipField(tag, 0);
  }

  private void skipField(int tag, int depth) {
    switch (tag & 7) {
      case VARINT -> readVarint();
      case FIXED64 -> skip(8);
      case LEN -> skip(readLength());
      case FIXED32 -> skip(4);
      case START_GROUP -> {
        if (depth >= MAX_DEPTH) {
          throw malformed("groups nested deeper than " + MAX_DEPTH);
        }
        int end = (tag & ~7) | END_GROUP;
        while (true) {
          if (atLimit()) {
            throw malformed("a group of field " + (tag >>> 3) + " is not closed");
          }
          int t = readTag();
          if (t == end) {
            return;
          }
          if ((t & 7) == END_GROUP) {
            throw malformed("a group end of field " + (t >>> 3) + " does not match");
          }
          skipField(t, depth + 1);
        }
      }
      case END_GROUP -> throw malformed("a group end of field " + (tag >>> 3) + " without its start");
      default -> throw malformed("invalid wire type " + (tag & 7));
    }
  }

  /** A length-delimited UTF-8 string at the current position (proto3 strings must be valid). */
  String readString() {
    int len = readLength();
    int at = pos;
    if (len == 0) {
      return "";
    }
    ByteBuffer view = contiguous(at, len);
    ByteBuffer bytes = view != null ? view : ByteBuffer.wrap(bytes(at, len));
    pos += len;
    try {
      CharBuffer chars = UTF8.get().reset().decode(bytes);
      return chars.toString();
    } catch (CharacterCodingException e) {
      throw malformed("a string field that is not valid UTF-8", at);
    }
  }

  /** A length-delimited field's bytes at the current position, copied into a new array. */
  byte[] readBytes() {
    int len = readLength();
    byte[] b = bytes(pos, len);
    pos += len;
    return b;
  }

  private byte[] bytes(int at, int len) {
    byte[] b = new byte[len];
    copyTo(at, len, ByteBuffer.wrap(b), 0);
    return b;
  }

  /**
   * A view of bytes {@code [at, at+len)} when they lie within one buffer (position 0, limit
   * {@code len}, big-endian as views start out), or null when they span several. Empty ranges
   * give null too.
   */
  ByteBuffer contiguous(int at, int len) {
    if (len == 0) {
      return null;
    }
    int i = segmentOf(at);
    if (at + len > starts[i + 1]) {
      return null;
    }
    return segs[i].slice(base[i] + (at - starts[i]), len);
  }

  /** Copies bytes {@code [at, at+len)} to {@code dst} at index {@code dstAt}, buffer by buffer. */
  void copyTo(int at, int len, ByteBuffer dst, int dstAt) {
    if (len == 0) {
      return;
    }
    int i = segmentOf(at);
    while (len > 0) {
      int from = at - starts[i];
      int n = Math.min(len, starts[i + 1] - at);
      dst.put(dstAt, segs[i], base[i] + from, n);
      at += n;
      dstAt += n;
      len -= n;
      i++;
    }
  }

  /** The buffer holding byte {@code at} (which must be < size): a binary search. */
  private int segmentOf(int at) {
    int lo = 0, hi = segs.length - 1;
    while (lo < hi) {
      int mid = (lo + hi + 1) >>> 1;
      if (starts[mid] <= at) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    // Skip empty buffers that share this start.
    while (starts[lo + 1] <= at) {
      lo++;
    }
    return lo;
  }
}
