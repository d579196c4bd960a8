package org.pserver.client;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.pserver.ElementType;

/**
 * How a parameter is laid out on the pservers. A parameter of at most {@code blockBytes} lives
 * whole on its hash pserver, as in the seed. A larger one is cut into blocks of {@code blockBytes}
 * (the last one shorter), stored as ordinary parameters {@code name#0}, {@code name#1}, ... on
 * consecutive pservers starting at the hash pserver, so one big embedding or layer uses every
 * pserver in parallel; a small record {@code name#layout} (int64 elements, block elements, type)
 * on the hash pserver lets a trainer that never saw the parameter find its blocks. The pservers
 * know nothing of this: checkpoints, recovery and exactly-once work per block.
 */
final class Blocks {
  static final char SEPARATOR = '#';
  static final String LAYOUT = "#layout";

  private Blocks() {}

  /** One piece of a parameter on one pserver: its server-side name and its range of elements. */
  record Piece(String serverName, int pserver, int offset, int count) {
    /** The bytes of this piece within the whole parameter's content (no copy). */
    ByteBuffer slice(ByteBuffer whole, int elemSize) {
      return whole.slice(whole.position() + offset * elemSize, count * elemSize);
    }
  }

  /** A parameter's element type, length and block length (= length when it is not split). */
  record Layout(ElementType type, int elements, int blockElements) {
    boolean split() {
      return blockElements < elements;
    }

    List<Piece> pieces(String name, int pservers) {
      int home = Partitioner.partition(name, pservers);
      if (!split()) {
        return List.of(new Piece(name, home, 0, elements));
      }
      List<Piece> out = new ArrayList<>();
      for (int k = 0, off = 0; off < elements; k++, off += blockElements) {
        out.add(new Piece(name + SEPARATOR + k, (home + k) % pservers, off, Math.min(blockElements, elements - off)));
      }
      return out;
    }
  }

  /** The layout of a parameter of {@code bytes} bytes of {@code type} (0 blockBytes: never split). */
  static Layout decide(ElementType type, int bytes, int blockBytes) {
    int elements = bytes / type.size();
    if (blockBytes <= 0 || bytes <= blockBytes || bytes % type.size() != 0) {
      return new Layout(type, elements, elements);
    }
    return new Layout(type, elements, Math.max(1, blockBytes / type.size()));
  }

  static String layoutName(String name) {
    return name + LAYOUT;
  }

  static ByteBuffer encode(Layout l) {
    ByteBuffer b = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN);
    b.putLong(0, l.elements()).putLong(8, l.blockElements()).putLong(16, l.type().code());
    return b;
  }

  static Layout decode(String name, ByteBuffer content) {
    ByteBuffer b = content.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    if (b.remaining() != 24) {
      throw new IllegalStateException("bad block layout record for " + name + ": " + b.remaining() + " bytes");
    }
    int p = b.position();
    long elements = b.getLong(p), block = b.getLong(p + 8), type = b.getLong(p + 16);
    if (elements <= 0 || block <= 0 || block > elements || type < 0 || type > 5 || elements > Integer.MAX_VALUE) {
      throw new IllegalStateException("bad block layout record for " + name + ": " + elements + "/" + block + "/" + type);
    }
    return new Layout(ElementType.fromCode((int) type), (int) elements, (int) block);
  }

  /** Client-side names may not contain the separator, which block names use. */
  static void checkName(String name) {
    if (name.indexOf(SEPARATOR) >= 0) {
      throw new IllegalArgumentException(
          "parameter name '" + name + "' contains '" + SEPARATOR + "', which the client reserves for blocks");
    }
  }
}
