package org.pserver.cluster;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.util.List;
import java.util.stream.Collectors;
import org.slf4j.LoggerFactory;

/** Captures what one class logs (through logback, the test-time SLF4J backend). */
final class LogCapture implements AutoCloseable {
  private final Logger logger;
  private final ListAppender<ILoggingEvent> appender = new ListAppender<>();

  LogCapture(Class<?> of) {
    logger = (Logger) LoggerFactory.getLogger(of);
    appender.start();
    logger.addAppender(appender);
  }

  /** "LEVEL message" lines logged so far. */
  List<String> lines() {
    return appender.list.stream()
        .map(e -> e.getLevel() + " " + e.getFormattedMessage())
        .collect(Collectors.toList());
  }

  boolean contains(String level, String fragment) {
    return lines().stream().anyMatch(l -> l.startsWith(level + " ") && l.contains(fragment));
  }

  @Override
  public void close() {
    logger.detachAppender(appender);
  }
}
