package org.pserver.cluster;

import static org.pserver.cluster.Etcd.bytes;
import static org.pserver.cluster.Etcd.quote;
import static org.pserver.cluster.Etcd.string;

import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.common.exception.CompactedException;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.watch.WatchResponse;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.Set;
import java.util.SortedMap;
import java.util.TreeMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The trainers' view of the pservers: index to {@code host:port}, kept current by an etcd watch.
 * The seed's {@code Lister}, which polled every 10 s and could return zero-valued entries (bug 11).
 *
 * <p>After {@link #start()}, a background thread reads {@code /ps_desired} (waiting with backoff,
 * and logging, until it exists and is a positive integer), lists {@code /ps/}, and watches the
 * {@code /ps} prefix from the listed revision + 1, so no change between the list and the watch is
 * missed. If the watch fails (etcd unreachable, compaction, leader loss) it lists again after a
 * backoff and re-watches, reporting whatever changed meanwhile as ordinary changes.
 *
 * <p>Contract and traps:
 *
 * <ul>
 *   <li>{@link #snapshot()} and {@link #servers()} are immutable copies; only valid entries are in
 *       them: an index in {@code 0..desired-1} written canonically ({@code /ps/3}, not {@code
 *       /ps/03}) with a {@code host:port} value. Anything else is ignored with one warning per
 *       distinct key and value; a valid entry overwritten with garbage counts as removed.
 *   <li>The desired count is read once. If {@code /ps_desired} later changes or disappears, the
 *       lister logs an error and keeps the first value: trainers partition parameters by it, and
 *       changing it under running trainers would scatter them (rescaling needs a restart).
 *   <li>Listener callbacks run one at a time, in order, on the lister's own event thread, never
 *       on a jetcd thread. A listener added after {@link #start()} may miss earlier changes: read
 *       {@link #snapshot()} after adding it.
 *   <li>An address can change without a removal in between (a pserver re-registered elsewhere
 *       within one watch batch, or after a re-list); a removal then an addition is also possible.
 *   <li>Waits are bounded: {@link #awaitDesired} and {@link #awaitAll} take a timeout.
 * </ul>
 *
 * <p>Thread-safe. Logs through SLF4J only.
 */
public final class EtcdLister implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EtcdLister.class);
  private static final AtomicInteger INSTANCES = new AtomicInteger();
  /** Watching "/ps" covers both /ps_desired and /ps/<i> with one revision stream. */
  private static final String WATCH_PREFIX = "/ps";

  /** One pserver: its index and {@code host:port}. */
  public record Server(int index, String address) {}

  /**
   * A change of one index: {@code previous} null means added, {@code current} null means removed,
   * both non-null means the address changed.
   */
  public record Change(int index, String previous, String current) {
    /** The index had no address before. */
    public boolean isAdded() {
      return previous == null;
    }

    /** The index has no address any more. */
    public boolean isRemoved() {
      return current == null;
    }
  }

  /** Hears changes of the pserver list. */
  public interface Listener {
    /** Called on the lister's event thread, in the order the changes happened. */
    void serverChanged(Change change);
  }

  private final String endpoints;
  private final Duration dialTimeout;
  private final Client etcd;
  private final ScheduledExecutorService worker;
  private final ExecutorService events;
  private final Backoff backoff;
  private final List<Listener> listeners = new CopyOnWriteArrayList<>();

  private final Object state = new Object();
  // Guarded by state:
  private int desired = -1;
  private TreeMap<Integer, String> servers = new TreeMap<>();
  private boolean started;
  private volatile boolean closed;

  // Worker-thread only:
  private long generation;
  private volatile Watch.Watcher watcher;
  private final Set<String> warned = new HashSet<>();
  private int failures;

  /** A lister with the seed's 5 s timeout replaced by {@code dialTimeout}; call {@link #start()}. */
  public EtcdLister(String endpoints, Duration dialTimeout) {
    this(endpoints, dialTimeout, Duration.ofMillis(200), Duration.ofSeconds(5));
  }

  /** As {@link #EtcdLister(String, Duration)}, with TLS and authentication to etcd. */
  public EtcdLister(String endpoints, Duration dialTimeout, EtcdSecurity security) {
    this(endpoints, dialTimeout, Duration.ofMillis(200), Duration.ofSeconds(5), security);
  }

  /**
   * @param initialBackoff first wait before re-reading a missing {@code /ps_desired} or re-listing
   * @param maxBackoff longest such wait
   */
  public EtcdLister(String endpoints, Duration dialTimeout, Duration initialBackoff, Duration maxBackoff) {
    this(endpoints, dialTimeout, initialBackoff, maxBackoff, EtcdSecurity.NONE);
  }

  /**
   * The full form.
   *
   * @param security TLS and authentication to etcd, as the pservers use ({@code --etcd-cacert},
   *     {@code --etcd-cert}, {@code --etcd-key}, {@code --etcd-user}, {@code --etcd-password});
   *     {@link EtcdSecurity#NONE} for plaintext. Trap: with wrong settings the lister does not
   *     fail, it keeps retrying (logging each failure), and {@link #awaitDesired} times out.
   * @throws IllegalArgumentException if a certificate or key file cannot be read or used
   */
  public EtcdLister(
      String endpoints, Duration dialTimeout, Duration initialBackoff, Duration maxBackoff, EtcdSecurity security) {
    Etcd.parseEndpoints(endpoints);
    Objects.requireNonNull(security, "security");
    if (dialTimeout.isNegative() || dialTimeout.isZero()) {
      throw new IllegalArgumentException("dial timeout must be > 0");
    }
    this.endpoints = endpoints;
    this.dialTimeout = dialTimeout;
    this.backoff = new Backoff(initialBackoff, maxBackoff);
    int n = INSTANCES.incrementAndGet();
    this.etcd = Etcd.connect(endpoints, dialTimeout, dialTimeout, security);
    this.worker = Executors.newSingleThreadScheduledExecutor(Etcd.threads("pserver-lister-" + n));
    this.events = Executors.newSingleThreadExecutor(Etcd.threads("pserver-lister-events-" + n));
  }

  /** Starts listing and watching in the background; returns at once. Idempotent. */
  public EtcdLister start() {
    synchronized (state) {
      if (closed) {
        throw new IllegalStateException("lister is closed");
      }
      if (started) {
        return this;
      }
      started = true;
    }
    submit(this::sync, 0);
    return this;
  }

  /** Adds a listener; add it before {@link #start()} to see every change from the first list. */
  public void addListener(Listener l) {
    listeners.add(Objects.requireNonNull(l));
  }

  /** Removes a listener; changes already queued for it may still arrive. */
  public void removeListener(Listener l) {
    listeners.remove(l);
  }

  /** The desired pserver count, once {@code /ps_desired} was read. */
  public OptionalInt desired() {
    synchronized (state) {
      return desired < 0 ? OptionalInt.empty() : OptionalInt.of(desired);
    }
  }

  /** The current pservers, index to address, sorted; immutable. */
  public SortedMap<Integer, String> snapshot() {
    synchronized (state) {
      return Collections.unmodifiableSortedMap(new TreeMap<>(servers));
    }
  }

  /** The current pservers in index order (the seed's {@code List()}, without zero values). */
  public List<Server> servers() {
    List<Server> out = new ArrayList<>();
    snapshot().forEach((i, a) -> out.add(new Server(i, a)));
    return List.copyOf(out);
  }

  /**
   * Waits until {@code /ps_desired} has been read.
   *
   * @throws TimeoutException if it is not there (or not valid) within {@code timeout}
   * @throws IllegalStateException if the lister is closed or was not started
   */
  public int awaitDesired(Duration timeout) throws TimeoutException, InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    synchronized (state) {
      while (desired < 0) {
        waitState(deadline, () -> "no valid " + EtcdKeys.PS_DESIRED + " in etcd at " + endpoints + " within " + Etcd.format(timeout));
      }
      return desired;
    }
  }

  /**
   * Waits until every index {@code 0..desired-1} has an address, and returns the snapshot then.
   *
   * @throws TimeoutException naming the missing indices, if they do not all appear in time
   * @throws IllegalStateException if the lister is closed or was not started
   */
  public SortedMap<Integer, String> awaitAll(Duration timeout) throws TimeoutException, InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    synchronized (state) {
      while (desired < 0 || servers.size() < desired) {
        waitState(deadline, () -> "pservers missing after " + Etcd.format(timeout) + ": " + missing());
      }
      return Collections.unmodifiableSortedMap(new TreeMap<>(servers));
    }
  }

  private interface Message {
    String get();
  }

  private void waitState(long deadline, Message timeoutMessage) throws TimeoutException, InterruptedException {
    if (closed) {
      throw new IllegalStateException("lister is closed");
    }
    if (!started) {
      throw new IllegalStateException("lister was not started");
    }
    long left = deadline - System.nanoTime();
    if (left <= 0) {
      throw new TimeoutException(timeoutMessage.get());
    }
    TimeUnit.NANOSECONDS.timedWait(state, left);
  }

  private String missing() {
    if (desired < 0) {
      return "all (" + EtcdKeys.PS_DESIRED + " not read yet)";
    }
    List<Integer> m = new ArrayList<>();
    for (int i = 0; i < desired; i++) {
      if (!servers.containsKey(i)) {
        m.add(i);
      }
    }
    return "indices " + m + " of " + desired;
  }

  // ---------------------------------------------------------------------------------------------
  // Worker thread

  private void sync() {
    if (closed) {
      return;
    }
    long gen = ++generation;
    closeWatcher();
    GetResponse r;
    try {
      r =
          Etcd.await(
              etcd.getKVClient().get(bytes(WATCH_PREFIX), GetOption.builder().isPrefix(true).build()),
              dialTimeout,
              "list " + WATCH_PREFIX,
              endpoints);
    } catch (IOException e) {
      retry(e.getMessage());
      return;
    } catch (InterruptedException e) {
      return; // closing
    }
    String desiredValue = null;
    boolean desiredPresent = false;
    for (KeyValue kv : r.getKvs()) {
      if (EtcdKeys.PS_DESIRED.equals(string(kv.getKey()))) {
        desiredPresent = true;
        desiredValue = string(kv.getValue());
      }
    }
    if (!acceptDesired(desiredPresent, desiredValue)) {
      Duration d = backoff.next();
      String problem =
          desiredPresent
              ? EtcdKeys.PS_DESIRED + " holds " + quote(desiredValue) + ", which is not a positive integer"
              : "no " + EtcdKeys.PS_DESIRED + " in etcd yet (no pserver has registered)";
      if (warnOnce("desired=" + desiredValue)) {
        if (desiredPresent) {
          log.error("{}; waiting for it to be fixed, re-reading every {}", problem, Etcd.format(d));
        } else {
          log.info("{}; waiting, re-reading with backoff", problem);
        }
      }
      submit(this::sync, d.toNanos());
      return;
    }
    TreeMap<Integer, String> fresh = new TreeMap<>();
    for (KeyValue kv : r.getKvs()) {
      String key = string(kv.getKey());
      if (key.startsWith(EtcdKeys.PS_PREFIX)) {
        int i = validEntry(key, string(kv.getValue()));
        if (i >= 0) {
          fresh.put(i, string(kv.getValue()));
        }
      }
    }
    replaceAll(fresh);
    long from = r.getHeader().getRevision() + 1;
    watcher =
        etcd.getWatchClient()
            .watch(
                bytes(WATCH_PREFIX),
                WatchOption.builder().isPrefix(true).withRevision(from).build(),
                Watch.listener(
                    resp -> submit(() -> onEvents(gen, resp), 0),
                    t -> submit(() -> watchFailed(gen, t), 0),
                    () -> submit(() -> watchFailed(gen, null), 0)));
    if (failures > 0) {
      log.info("listing pservers works again after {} failure(s)", failures);
    }
    failures = 0;
    backoff.reset();
    log.debug("listed {} pserver(s) at revision {}; watching from {}", fresh.size(), from - 1, from);
  }

  /** Sets desired the first time; later values are checked against it. False: not usable yet. */
  private boolean acceptDesired(boolean present, String value) {
    OptionalInt n = EtcdKeys.parseDesired(value);
    synchronized (state) {
      if (desired < 0) {
        if (n.isEmpty()) {
          return false;
        }
        desired = n.getAsInt();
        state.notifyAll();
        log.info("{} = {}", EtcdKeys.PS_DESIRED, desired);
        return true;
      }
      if (!present) {
        if (warnOnce("desired-deleted")) {
          log.error("{} was deleted; keeping {} pservers", EtcdKeys.PS_DESIRED, desired);
        }
      } else if (n.isEmpty() || n.getAsInt() != desired) {
        if (warnOnce("desired-changed=" + value)) {
          log.error(
              "{} changed to {} while trainers run; keeping {} (rescaling needs a restart of the job)",
              EtcdKeys.PS_DESIRED,
              quote(value),
              desired);
        }
      }
      return true;
    }
  }

  /** The index of a valid /ps/ entry, or -1 (with one warning per distinct key and value). */
  private int validEntry(String key, String value) {
    OptionalInt i = EtcdKeys.parseIndex(key);
    int n;
    synchronized (state) {
      n = desired;
    }
    if (i.isEmpty()) {
      if (warnOnce("key " + key)) {
        log.warn("ignoring {}: not a /ps/<index> key", quote(key));
      }
      return -1;
    }
    if (i.getAsInt() >= n) {
      if (warnOnce("key " + key)) {
        log.warn("ignoring {}: index {} is not below {}={}", key, i.getAsInt(), EtcdKeys.PS_DESIRED, n);
      }
      return -1;
    }
    if (!EtcdKeys.isValidAddress(value)) {
      if (warnOnce(key + "=" + value)) {
        log.warn("ignoring {}={}: not a host:port address", key, quote(value));
      }
      return -1;
    }
    return i.getAsInt();
  }

  private void onEvents(long gen, WatchResponse r) {
    if (gen != generation || closed) {
      return;
    }
    for (WatchEvent e : r.getEvents()) {
      String key = string(e.getKeyValue().getKey());
      boolean put = e.getEventType() == WatchEvent.EventType.PUT;
      if (EtcdKeys.PS_DESIRED.equals(key)) {
        acceptDesired(put, put ? string(e.getKeyValue().getValue()) : null);
        continue;
      }
      if (!key.startsWith(EtcdKeys.PS_PREFIX)) {
        continue; // e.g. /psfoo: shares the watched prefix, not ours
      }
      if (put) {
        String value = string(e.getKeyValue().getValue());
        int i = validEntry(key, value);
        if (i >= 0) {
          update(i, value);
        } else {
          EtcdKeys.parseIndex(key).ifPresent(this::remove); // a valid entry turned to garbage
        }
      } else {
        EtcdKeys.parseIndex(key).ifPresent(this::remove);
      }
    }
  }

  private void watchFailed(long gen, Throwable t) {
    if (gen != generation || closed) {
      return;
    }
    generation++; // drop anything the old watch still delivers
    closeWatcher();
    Duration d = backoff.next();
    if (t instanceof CompactedException) {
      log.info("watch of {} hit a compaction; listing again", WATCH_PREFIX);
      d = Duration.ZERO;
    } else {
      String why = t == null ? "the watch ended" : Etcd.translate(t, "watch " + WATCH_PREFIX, endpoints, dialTimeout).getMessage();
      retryLog(why, d);
    }
    submit(this::sync, d.toNanos());
  }

  private void retry(String why) {
    Duration d = backoff.next();
    retryLog(why, d);
    submit(this::sync, d.toNanos());
  }

  private void retryLog(String why, Duration d) {
    failures++;
    if (failures == 1 || failures % 10 == 0) {
      log.warn("{} (failure {}); listing again in {}", why, failures, Etcd.format(d));
    } else {
      log.debug("{} (failure {}); listing again in {}", why, failures, Etcd.format(d));
    }
  }

  private void replaceAll(TreeMap<Integer, String> fresh) {
    List<Change> changes = new ArrayList<>();
    synchronized (state) {
      for (Map.Entry<Integer, String> e : servers.entrySet()) {
        if (!fresh.containsKey(e.getKey())) {
          changes.add(new Change(e.getKey(), e.getValue(), null));
        }
      }
      for (Map.Entry<Integer, String> e : fresh.entrySet()) {
        String old = servers.get(e.getKey());
        if (!e.getValue().equals(old)) {
          changes.add(new Change(e.getKey(), old, e.getValue()));
        }
      }
      servers = fresh;
      state.notifyAll();
    }
    changes.forEach(this::emit);
  }

  private void update(int i, String address) {
    String old;
    synchronized (state) {
      old = servers.put(i, address);
      state.notifyAll();
    }
    if (!address.equals(old)) {
      emit(new Change(i, old, address));
    }
  }

  private void remove(int i) {
    String old;
    synchronized (state) {
      old = servers.remove(i);
      state.notifyAll();
    }
    if (old != null) {
      emit(new Change(i, old, null));
    }
  }

  private void emit(Change c) {
    log.info(
        c.isAdded() ? "pserver {} at {}" : c.isRemoved() ? "pserver {} gone (was {})" : "pserver {} moved to {}",
        c.index(),
        c.isRemoved() ? c.previous() : c.current());
    for (Listener l : listeners) {
      try {
        events.execute(
            () -> {
              try {
                l.serverChanged(c);
              } catch (RuntimeException e) {
                log.warn("lister listener {} threw", l, e);
              }
            });
      } catch (RejectedExecutionException closing) {
        return;
      }
    }
  }

  private boolean warnOnce(String what) {
    if (warned.size() > 1000) {
      warned.clear();
    }
    return warned.add(what);
  }

  private void closeWatcher() {
    Watch.Watcher w = watcher;
    watcher = null;
    if (w != null) {
      try {
        w.close();
      } catch (RuntimeException e) {
        log.debug("closing the watch: {}", e.toString());
      }
    }
  }

  private void submit(Runnable r, long delayNanos) {
    try {
      worker.schedule(r, delayNanos, TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException closing) {
      // closed
    }
  }

  /** Stops watching and closes the etcd connection; waiters get {@link IllegalStateException}. */
  @Override
  public void close() {
    synchronized (state) {
      if (closed) {
        return;
      }
      closed = true;
      state.notifyAll();
    }
    worker.shutdownNow(); // drops delayed re-lists, interrupts a list in progress
    try {
      if (!worker.awaitTermination(dialTimeout.toMillis() + 500, TimeUnit.MILLISECONDS)) {
        log.warn("lister thread did not stop within {}", Etcd.format(dialTimeout.plusMillis(500)));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    closeWatcher(); // the worker is gone: no race on the field
    events.shutdown();
    try {
      etcd.close();
    } catch (RuntimeException e) {
      log.warn("closing the etcd connection: {}", e.toString());
    }
  }
}
