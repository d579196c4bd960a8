package org.pserver.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import org.junit.jupiter.api.Test;
import picocli.CommandLine.TypeConversionException;

class GoDurationTest {
  @Test
  void parsesTheSeedsFlagSyntax() {
    assertEquals(Duration.ofSeconds(600), GoDuration.parse("600s"));
    assertEquals(Duration.ofMinutes(10), GoDuration.parse("10m"));
    assertEquals(Duration.ofMinutes(90), GoDuration.parse("1h30m"));
    assertEquals(Duration.ofMillis(250), GoDuration.parse("250ms"));
    assertEquals(Duration.ofMillis(1500), GoDuration.parse("1.5s"));
    assertEquals(Duration.ZERO, GoDuration.parse("0"));
    assertEquals(Duration.ofNanos(-2000), GoDuration.parse("-2us"));
    for (String bad : new String[] {"", "10", "5 s", "s", "1d", "1.2.3s", "10m-5s"}) {
      assertThrows(TypeConversionException.class, () -> GoDuration.parse(bad), bad);
    }
  }

  @Test
  void formatsLikeGo() {
    assertEquals("0s", GoDuration.format(Duration.ZERO));
    assertEquals("250ms", GoDuration.format(Duration.ofMillis(250)));
    assertEquals("10m0s", GoDuration.format(Duration.ofMinutes(10)));
    assertEquals("1h30m0s", GoDuration.format(Duration.ofMinutes(90)));
    assertEquals("1.5s", GoDuration.format(Duration.ofMillis(1500)));
    assertEquals(Duration.ofMinutes(90), GoDuration.parse(GoDuration.format(Duration.ofMinutes(90))));
  }
}
