# pserver container image: docker build -t pserver:dev .
#
# Stage 1 builds target/pserver.jar (every dependency and the native update kernels inside) with
# JDK 17, Maven, g++ and cmake. Stage 2 is a JRE 17 that runs it as an unprivileged user.
# The native library is compiled in stage 1 against the same Ubuntu release as stage 2's glibc and
# libstdc++; it carries AVX-512, AVX2 and baseline x86-64 bodies and picks one at run time.

FROM maven:3.9-eclipse-temurin-17 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ cmake make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pom.xml CMakeLists.txt ./
COPY proto/ proto/
COPY native/ native/
COPY java/ java/
COPY bench/ bench/
# -DskipTests also skips the C++ tests; the test sources (java/test, bench/java) still compile.
RUN mvn -B -ntp package -DskipTests \
 && jar tf target/pserver.jar | grep -q 'org/pserver/kernels/linux-x86_64/libjniPsKernelsLib.so'

FROM eclipse-temurin:17-jre
# A fixed numeric user, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 pserver \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pserver --shell /usr/sbin/nologin pserver \
 && mkdir -p /app /var/lib/pserver/checkpoints \
 && chown -R 10001:10001 /var/lib/pserver
COPY --from=build /src/target/pserver.jar /app/pserver.jar
USER 10001:10001
WORKDIR /var/lib/pserver
ENV PSERVER_CHECKPOINT_PATH=/var/lib/pserver/checkpoints \
    JAVA_TOOL_OPTIONS="-XX:MaxRAMPercentage=40"
# gRPC, plaintext health (Kubernetes probes), Prometheus metrics: see deploy/pserver.yaml.
EXPOSE 8001 8002 9090
# SIGTERM: stop taking writes, drain calls in flight, take a final checkpoint, exit 0.
STOPSIGNAL SIGTERM
# The JavaCPP cache (where the native library is unpacked) goes to /tmp, which stays writable when
# the root file system is read-only. Heap and direct-memory sizes come from JAVA_TOOL_OPTIONS.
ENTRYPOINT ["java", "-XX:+ExitOnOutOfMemoryError", "-Dorg.bytedeco.javacpp.cachedir=/tmp/javacpp", "-jar", "/app/pserver.jar"]
CMD ["serve"]
