package org.pserver.store;

import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Which pushes have been applied to one parameter, so a retried push is acknowledged without being
 * applied twice.
 *
 * <p>A push is identified by (trainer id, sequence number). Each push also carries the trainer's
 * <em>low watermark</em>: every sequence number below it has been acknowledged to that trainer,
 * which never retries an acknowledged push. So per trainer this keeps the watermark and the set of
 * applied sequence numbers at or above it: the set holds at most the trainer's pushes in flight.
 * Trainers not heard from for {@code ttl} are forgotten at the next {@link #expire}.
 *
 * <p>Why per parameter rather than per pserver: checkpoints are taken parameter by parameter while
 * training goes on, so the record of each parameter must be saved together with its weights;
 * after a restore, a retried push is then applied exactly to the parameters whose saved state
 * lacks it. Not thread-safe: guarded by the parameter's lock.
 */
public final class AppliedPushes {
  private static final int FORMAT = 1;

  private static final class Trainer {
    long low;
    final TreeSet<Long> applied = new TreeSet<>();
    long lastSeenMillis;
  }

  private final Map<String, Trainer> trainers = new HashMap<>();

  /**
   * True if (trainer, seq) was applied before. Also advances the trainer's watermark to {@code
   * low} and forgets sequence numbers below it.
   */
  public boolean seen(String trainer, long seq, long low, long nowMillis) {
    Trainer t = trainers.computeIfAbsent(trainer, k -> new Trainer());
    t.lastSeenMillis = nowMillis;
    if (low > t.low) {
      t.low = low;
      t.applied.headSet(low).clear();
    }
    return seq < t.low || t.applied.contains(seq);
  }

  /** Records that (trainer, seq) has been applied. */
  public void record(String trainer, long seq, long nowMillis) {
    Trainer t = trainers.computeIfAbsent(trainer, k -> new Trainer());
    t.lastSeenMillis = nowMillis;
    if (seq >= t.low) {
      t.applied.add(seq);
    }
  }

  /** Forgets trainers not heard from since {@code nowMillis - ttlMillis}. */
  public void expire(long nowMillis, long ttlMillis) {
    trainers.values().removeIf(t -> nowMillis - t.lastSeenMillis > ttlMillis);
  }

  public int trainerCount() {
    return trainers.size();
  }

  /** A compact binary form for checkpoints (see {@link #decode}). */
  public byte[] encode() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeInt(FORMAT);
      out.writeInt(trainers.size());
      for (Map.Entry<String, Trainer> e : trainers.entrySet()) {
        byte[] id = e.getKey().getBytes(StandardCharsets.UTF_8);
        out.writeInt(id.length);
        out.write(id);
        Trainer t = e.getValue();
        out.writeLong(t.low);
        out.writeLong(t.lastSeenMillis);
        out.writeInt(t.applied.size());
        for (long s : t.applied) {
          out.writeLong(s);
        }
      }
    } catch (IOException e) {
      throw new AssertionError(e); // in-memory stream
    }
    return bytes.toByteArray();
  }

  /**
   * Reads what {@link #encode} wrote.
   *
   * @throws IOException if the bytes are malformed or truncated
   */
  public static AppliedPushes decode(byte[] data) throws IOException {
    AppliedPushes p = new AppliedPushes();
    if (data.length == 0) {
      return p;
    }
    try (DataInputStream in = new DataInputStream(new java.io.ByteArrayInputStream(data))) {
      int format = in.readInt();
      if (format != FORMAT) {
        throw new IOException("unknown applied-pushes format " + format);
      }
      int n = in.readInt();
      if (n < 0) {
        throw new IOException("negative trainer count");
      }
      for (int i = 0; i < n; i++) {
        int len = in.readInt();
        if (len < 0 || len > data.length) {
          throw new IOException("bad trainer id length " + len);
        }
        String id = new String(in.readNBytes(len), StandardCharsets.UTF_8);
        Trainer t = new Trainer();
        t.low = in.readLong();
        t.lastSeenMillis = in.readLong();
        int count = in.readInt();
        if (count < 0 || count > data.length / 8) {
          throw new IOException("bad sequence count " + count);
        }
        for (int j = 0; j < count; j++) {
          t.applied.add(in.readLong());
        }
        p.trainers.put(id, t);
      }
      if (in.read() != -1) {
        throw new IOException("trailing bytes after applied-pushes record");
      }
    } catch (java.io.EOFException e) {
      throw new IOException("truncated applied-pushes record", e);
    }
    return p;
  }

  /** Trainer ids, for tests and diagnostics. */
  List<String> trainerIds() {
    return new ArrayList<>(trainers.keySet());
  }
}
