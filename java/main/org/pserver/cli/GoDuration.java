package org.pserver.cli;

import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * Parses durations the way the seed's Go flags did: a sequence of decimal numbers with units, such
 * as {@code 600s}, {@code 10m}, {@code 1h30m}, {@code 250ms} or {@code 1.5s}; units {@code ns us
 * µs ms s m h}; a lone {@code 0} needs no unit.
 */
final class GoDuration implements ITypeConverter<Duration> {
  private static final Pattern PART = Pattern.compile("(\\d+(?:\\.\\d*)?|\\.\\d+)(ns|us|µs|ms|s|m|h)");

  @Override
  public Duration convert(String value) {
    return parse(value);
  }

  static Duration parse(String value) {
    String s = value.trim();
    if (s.equals("0")) {
      return Duration.ZERO;
    }
    boolean negative = s.startsWith("-");
    if (negative || s.startsWith("+")) {
      s = s.substring(1);
    }
    Matcher m = PART.matcher(s);
    int at = 0;
    double nanos = 0;
    while (at < s.length()) {
      if (!m.find(at) || m.start() != at) {
        throw new TypeConversionException(
            "'" + value + "' is not a duration like 600s, 10m, 1h30m or 250ms");
      }
      nanos += Double.parseDouble(m.group(1)) * unit(m.group(2));
      at = m.end();
    }
    if (s.isEmpty()) {
      throw new TypeConversionException("empty duration");
    }
    long n = Math.round(nanos);
    return Duration.ofNanos(negative ? -n : n);
  }

  /** Formats like Go's Duration.String: {@code 0s}, {@code 250ms}, {@code 10m0s}, {@code 1h30m0s}. */
  static String format(Duration d) {
    if (d.isZero()) {
      return "0s";
    }
    if (d.isNegative()) {
      return "-" + format(d.negated());
    }
    if (d.compareTo(Duration.ofSeconds(1)) < 0) {
      long n = d.toNanos();
      return n % 1_000_000 == 0 ? n / 1_000_000 + "ms" : n % 1_000 == 0 ? n / 1_000 + "us" : n + "ns";
    }
    long h = d.toHours(), m = d.toMinutesPart(), s = d.toSecondsPart(), ms = d.toMillisPart();
    String sec = ms == 0 ? s + "s" : String.format(java.util.Locale.ROOT, "%d.%03ds", s, ms).replaceAll("0+s$", "s");
    return (h > 0 ? h + "h" + m + "m" : m > 0 ? m + "m" : "") + sec;
  }

  private static double unit(String u) {
    return switch (u) {
      case "ns" -> 1;
      case "us", "µs" -> 1e3;
      case "ms" -> 1e6;
      case "s" -> 1e9;
      case "m" -> 60e9;
      case "h" -> 3600e9;
      default -> throw new IllegalArgumentException(u);
    };
  }
}
