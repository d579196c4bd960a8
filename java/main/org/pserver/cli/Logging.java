package org.pserver.cli;

import java.util.Locale;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** The seed's log levels (debug, info, warn, error, crit) applied to the logging backend. */
final class Logging {
  private Logging() {}

  /** Accepts the seed's level names; {@code crit} maps to error. */
  static final class Level implements ITypeConverter<String> {
    @Override
    public String convert(String value) {
      String v = value.trim().toLowerCase(Locale.ROOT);
      return switch (v) {
        case "debug", "info", "warn", "error" -> v;
        case "crit" -> "error";
        default -> throw new TypeConversionException(
            "'" + value + "' is not a log level (debug, info, warn, error, crit)");
      };
    }
  }

  /** Sets the root level when the backend is logback (the daemon's); otherwise leaves it alone. */
  static void setLevel(String level) {
    Logger root = LoggerFactory.getLogger(Logger.ROOT_LOGGER_NAME);
    try {
      if (root instanceof ch.qos.logback.classic.Logger lb) {
        lb.setLevel(ch.qos.logback.classic.Level.toLevel(level));
      }
    } catch (NoClassDefFoundError e) {
      // another SLF4J backend: its own configuration decides
    }
  }
}
