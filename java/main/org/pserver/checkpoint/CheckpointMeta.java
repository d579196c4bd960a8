package org.pserver.checkpoint;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.nio.charset.StandardCharsets;
import java.util.Objects;

/**
 * A checkpoint's metadata, stored under {@code /checkpoints/<index>} as the seed's JSON: {@code
 * {"uuid":"...","path":"...","crc32":N,"timestamp":N}} in that key order, with {@code crc32} the
 * IEEE CRC-32 of the whole file as an unsigned decimal and {@code timestamp} in nanoseconds.
 */
public record CheckpointMeta(String uuid, String path, long crc32, long timestamp) {
  public CheckpointMeta {
    Objects.requireNonNull(uuid, "uuid");
    Objects.requireNonNull(path, "path");
    if (crc32 < 0 || crc32 > 0xFFFF_FFFFL) {
      throw new IllegalArgumentException("crc32 out of range: " + crc32);
    }
  }

  /** The seed's JSON, byte for byte in its layout. */
  public byte[] toJson() {
    JsonObject o = new JsonObject();
    o.addProperty("uuid", uuid);
    o.addProperty("path", path);
    o.addProperty("crc32", crc32);
    o.addProperty("timestamp", timestamp);
    return o.toString().getBytes(StandardCharsets.UTF_8);
  }

  /**
   * Parses the seed's JSON.
   *
   * @throws CheckpointException of kind {@link CheckpointException.Kind#BAD_METADATA} for anything
   *     that is not exactly that: bad JSON, missing or mistyped keys, a crc32 out of range
   */
  public static CheckpointMeta fromJson(byte[] json) throws CheckpointException {
    String text = new String(json, StandardCharsets.UTF_8);
    try {
      JsonElement e = JsonParser.parseString(text);
      if (!e.isJsonObject()) {
        throw bad(text, "not a JSON object");
      }
      JsonObject o = e.getAsJsonObject();
      String uuid = string(o, "uuid", text);
      String path = string(o, "path", text);
      long crc = number(o, "crc32", text);
      long ts = number(o, "timestamp", text);
      if (crc < 0 || crc > 0xFFFF_FFFFL) {
        throw bad(text, "crc32 out of range");
      }
      if (uuid.isEmpty() || path.isEmpty()) {
        throw bad(text, "empty uuid or path");
      }
      return new CheckpointMeta(uuid, path, crc, ts);
    } catch (JsonParseException | IllegalStateException | ArithmeticException | NumberFormatException ex) {
      throw new CheckpointException(
          CheckpointException.Kind.BAD_METADATA, "checkpoint metadata is not valid JSON: " + abbreviate(text), ex);
    }
  }

  private static String string(JsonObject o, String key, String text) throws CheckpointException {
    JsonElement v = o.get(key);
    if (v == null || !v.isJsonPrimitive() || !((JsonPrimitive) v).isString()) {
      throw bad(text, "missing or non-string \"" + key + "\"");
    }
    return v.getAsString();
  }

  private static long number(JsonObject o, String key, String text) throws CheckpointException {
    JsonElement v = o.get(key);
    if (v == null || !v.isJsonPrimitive() || !((JsonPrimitive) v).isNumber()) {
      throw bad(text, "missing or non-numeric \"" + key + "\"");
    }
    return v.getAsBigDecimal().longValueExact();
  }

  private static CheckpointException bad(String text, String why) {
    return new CheckpointException(
        CheckpointException.Kind.BAD_METADATA, "bad checkpoint metadata (" + why + "): " + abbreviate(text));
  }

  private static String abbreviate(String s) {
    return s.length() > 200 ? s.substring(0, 200) + "..." : s;
  }
}
