package org.pserver.cluster;

import static org.pserver.cluster.Etcd.bytes;
import static org.pserver.cluster.Etcd.quote;
import static org.pserver.cluster.Etcd.string;
import static org.pserver.cluster.LeaseKeeper.hex;

import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.kv.GetResponse;
import io.etcd.jetcd.kv.TxnResponse;
import io.etcd.jetcd.lease.LeaseGrantResponse;
import io.etcd.jetcd.lease.LeaseKeepAliveResponse;
import io.etcd.jetcd.op.Cmp;
import io.etcd.jetcd.op.CmpTarget;
import io.etcd.jetcd.op.Op;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.PutOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import io.etcd.jetcd.watch.WatchResponse;
import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.OptionalInt;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pserver's etcd client: registers this pserver under {@code /ps/<index>}, keeps the claim
 * alive, proves (or stops claiming) ownership of the index, and serves as the pserver's fenced
 * {@link KVStore} for checkpoint metadata. The seed's {@code EtcdClient}, with its bugs 9 and 10
 * fixed.
 *
 * <h2>Registration ({@link #register(int, int, Duration)})</h2>
 *
 * <ol>
 *   <li>{@code /ps_desired} is created with a transaction if it is absent, holding this client's
 *       desired count, <b>on no lease</b> (it outlives the pserver that wrote it; the seed put it on
 *       that pserver's lease). An existing value is never overwritten; a different valid value is
 *       adopted with a warning. A value that is not a positive integer is logged as an error and
 *       re-read with backoff until someone fixes it.
 *   <li>One lease (TTL {@code ttlSeconds}) is granted and a free {@code /ps/<i>} is claimed with a
 *       create-if-absent transaction on it, value {@code host:port} (host = the advertise address).
 *       With an explicit preferred index ({@code --index}) the client waits for that index as long
 *       as it is held (logging who holds it). With remembered indices ({@link #registerRemembered}:
 *       the ones this pserver's checkpoint directory served) it takes the first free one, and while
 *       all are held it waits for them only a bounded time (long enough for its own previous
 *       lease to expire after a crash), then takes the lowest free index. Otherwise it takes the
 *       lowest free one. When all slots are taken it waits with capped exponential backoff and
 *       says so in the log. A waiting client holds no lease; a lost race retries at
 *       once with the same lease; giving up, being interrupted or being closed revokes it.
 *   <li>{@code register} keeps trying (etcd unreachable: one clear log line per attempt, each
 *       attempt bounded by the dial timeout, then backoff) until it succeeds, the client is closed
 *       ({@link IOException}), the thread is interrupted, or the optional give-up time passes
 *       ({@link IOException} naming the attempts and the last error).
 * </ol>
 *
 * <h2>Ownership and fencing</h2>
 *
 * <p>The client renews its lease itself (see {@code LeaseKeeper}: {@code keepAliveOnce} about
 * every TTL/3) and records when each acknowledged keep-alive was sent; the lease cannot expire
 * before {@code send time + TTL}. {@link #isOwner()} is true only while that bound (minus a small
 * safety margin) is in the future and nothing has shown the claim to be gone. It turns false at
 * once, before the lease can have expired on the server, when:
 *
 * <ul>
 *   <li>no keep-alive was acknowledged in time (etcd unreachable longer than about the TTL);
 *   <li>etcd says the lease no longer exists;
 *   <li>the watch on {@code /ps/<index>} sees it deleted or changed, or a fenced put finds it so.
 * </ul>
 *
 * <p>Listeners then hear {@link OwnershipListener#ownershipLost}, and a background thread
 * re-registers <em>the same index</em> as soon as etcd answers (reusing the lease if it is still
 * alive, else a new one), then reports {@link OwnershipListener#ownershipRegained}. If another
 * pserver holds the index by then, it reports {@link OwnershipListener#indexTakenOver}, revokes its
 * lease and stops: it never takes another index silently (the daemon decides; it exits). The same
 * happens when {@code /ps/<index>} is free again but {@code /checkpoints/<index>} is not what this
 * pserver last saw (at its claim, or its own newest write of it): another pserver owned the index
 * meanwhile, acknowledged writes and published a checkpoint of them before going away, and
 * reclaiming with this pserver's in-memory state would silently drop them. The check is part of
 * the claim transaction. A write of ours whose answer was lost is recognized by its value.
 *
 * <p>Every {@link #put} of a client on which {@code register} was called is fenced: refused with
 * {@link NotOwnerException} without calling etcd while {@link #isOwner()} is false, and otherwise
 * sent as a transaction that writes only if {@code /ps/<index>} still has the mod revision of our
 * claim (which changes if the key is deleted, re-created or overwritten). A client that never
 * registered (a trainer) puts unconditionally.
 *
 * <h2>Traps</h2>
 *
 * <ul>
 *   <li>{@code isOwner()} is a proof for <em>now</em>: check it (or rely on the fenced put) right
 *       before an externally visible action, not once at start-up.
 *   <li>An {@link IOException} other than {@link NotOwnerException} from {@link #put} means the
 *       outcome is unknown: the write may have happened.
 *   <li>Each etcd call waits at most the dial timeout (also used as the gRPC deadline of every
 *       call); a {@code KVStore} timeout longer than that is cut to it.
 *   <li>{@link #close()} revokes the lease so {@code /ps/<index>} disappears at once; if etcd is
 *       unreachable then, the key disappears when the lease expires (TTL).
 *   <li>Takeover detection after a loss rests on {@code /checkpoints/<index>}: a successor that
 *       owned the index but never published a checkpoint leaves no trace, and this pserver then
 *       reclaims the index (that successor's acknowledged writes were not durable: its own crash
 *       would have lost them too). Conversely, anyone rewriting or deleting {@code
 *       /checkpoints/<index>} by hand while this pserver is cut off makes it stop.
 * </ul>
 *
 * <p>Thread-safe. Logs through SLF4J only. Listener callbacks run on the client's own event thread.
 */
public final class EtcdClient implements KVStore, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EtcdClient.class);
  private static final AtomicInteger INSTANCES = new AtomicInteger();
  /** How many checkpoint-metadata writes of unknown outcome are remembered (oldest dropped). */
  private static final int MAX_UNCONFIRMED = 16;
  /** Longest pause between looks while waiting for a held remembered index. */
  private static final Duration REMEMBERED_POLL = Duration.ofMillis(500);

  /** Where the client stands; informational: {@link #isOwner()} is the fence. */
  public enum State {
    /** {@code register} was never called or gave up; puts are unconditional until it is called. */
    UNREGISTERED,
    /** {@code register} is running. */
    REGISTERING,
    /** Owns its index (as long as {@link EtcdClient#isOwner()} also says so). */
    OWNER,
    /** Lost ownership; re-registering the same index in the background. */
    LOST,
    /** Another pserver claimed the index while this one was not the owner. Terminal. */
    TAKEN_OVER,
    /** Closed. Terminal. */
    CLOSED
  }

  private final String endpoints;
  private final int desiredPservers;
  private final Duration dialTimeout;
  private final Duration keepAliveTimeout;
  private final int ttlSeconds;
  private final String advertiseHost;
  private final Duration initialBackoff;
  private final Duration maxBackoff;

  private final Client etcd;
  private final ScheduledExecutorService scheduler;
  private final ExecutorService registrar;
  private final ExecutorService events;
  private final List<OwnershipListener> listeners = new CopyOnWriteArrayList<>();
  private final CountDownLatch closedLatch = new CountDownLatch(1);

  /** Counts etcd round trips made by register() and the background re-registration (tests). */
  final AtomicInteger registrationAttempts = new AtomicInteger();

  private final Object lock = new Object();
  // Guarded by lock:
  private State state = State.UNREGISTERED;
  private boolean fenced; // register() was called once: every put is fenced from then on
  private int index = -1;
  private int desired = -1;
  private String address;
  private long heldLease; // the one lease this client owns (0: none); revoked on close
  private long heldSentNanos; // send time of the newest grant/keep-alive that proves heldLease
  private long heldTtl;
  private volatile Ownership own; // non-null only while OWNER; written under lock
  // Mod revision of /checkpoints/<index> as of our claim or our newest confirmed fenced put of it
  // (0: absent). A different revision when we reclaim means another pserver owned the index.
  private long checkpointRevision = -1;
  // Values of our fenced puts of /checkpoints/<index> whose outcome is unknown (they may have landed).
  private final List<byte[]> unconfirmedCheckpoints = new ArrayList<>();

  /** An established claim: index, lease, and the mod revision of our /ps/<index> (the fence). */
  private static final class Ownership {
    final int index;
    final long leaseId;
    final long fence;
    final LeaseKeeper keeper;
    Watch.Watcher watcher; // guarded by EtcdClient.lock

    Ownership(int index, long leaseId, long fence, LeaseKeeper keeper) {
      this.index = index;
      this.leaseId = leaseId;
      this.fence = fence;
      this.keeper = keeper;
    }
  }

  /**
   * The seed's constructor: no I/O happens until the first call.
   *
   * @param endpoints comma-separated etcd endpoints, {@code http://host:port} or {@code host:port}
   * @param desiredPservers written to {@code /ps_desired} if that key is absent (>= 1)
   * @param dialTimeout bound of each etcd call, connecting included
   * @param ttlSeconds lease TTL (>= 1; etcd may grant more, e.g. 2 s for 1 with default settings)
   */
  public EtcdClient(String endpoints, int desiredPservers, Duration dialTimeout, int ttlSeconds) {
    this(builder(endpoints).desiredPservers(desiredPservers).dialTimeout(dialTimeout).ttlSeconds(ttlSeconds));
  }

  private EtcdClient(Builder b) {
    Etcd.parseEndpoints(b.endpoints); // fail fast on a malformed list
    if (b.desiredPservers < 1) {
      throw new IllegalArgumentException("desired pserver count must be >= 1, got " + b.desiredPservers);
    }
    if (b.ttlSeconds < 1) {
      throw new IllegalArgumentException("lease TTL must be >= 1 s, got " + b.ttlSeconds);
    }
    requirePositive(b.dialTimeout, "dial timeout");
    this.endpoints = b.endpoints;
    this.desiredPservers = b.desiredPservers;
    this.dialTimeout = b.dialTimeout;
    this.ttlSeconds = b.ttlSeconds;
    this.advertiseHost = b.advertiseHost;
    this.initialBackoff = b.initialBackoff;
    this.maxBackoff = b.maxBackoff;
    long interval = LeaseKeeper.intervalNanos(b.ttlSeconds);
    this.keepAliveTimeout =
        Duration.ofNanos(Math.max(TimeUnit.MILLISECONDS.toNanos(200), Math.min(dialTimeout.toNanos(), interval)));
    new Backoff(initialBackoff, maxBackoff); // validates
    int n = INSTANCES.incrementAndGet();
    this.etcd = Etcd.connect(endpoints, dialTimeout, keepAliveTimeout, b.security);
    this.scheduler = Executors.newSingleThreadScheduledExecutor(Etcd.threads("pserver-etcd-lease-" + n));
    this.registrar = Executors.newSingleThreadExecutor(Etcd.threads("pserver-etcd-register-" + n));
    this.events = Executors.newSingleThreadExecutor(Etcd.threads("pserver-etcd-events-" + n));
  }

  /** A builder for the options beyond the seed's four. */
  public static Builder builder(String endpoints) {
    return new Builder(endpoints);
  }

  /** Options for {@link EtcdClient}; defaults are the seed's (5 s dial timeout, 5 s TTL, 1 pserver). */
  public static final class Builder {
    private final String endpoints;
    private int desiredPservers = 1;
    private Duration dialTimeout = Duration.ofSeconds(5);
    private int ttlSeconds = 5;
    private String advertiseHost;
    private EtcdSecurity security = EtcdSecurity.NONE;
    private Duration initialBackoff = Duration.ofMillis(200);
    private Duration maxBackoff = Duration.ofSeconds(5);

    private Builder(String endpoints) {
      this.endpoints = Objects.requireNonNull(endpoints, "endpoints");
    }

    /** Written to {@code /ps_desired} if absent (the seed's {@code --num-pservers}). */
    public Builder desiredPservers(int n) {
      this.desiredPservers = n;
      return this;
    }

    /** Bound of each etcd call, connecting included (the seed's {@code --dial-timeout}). */
    public Builder dialTimeout(Duration d) {
      this.dialTimeout = Objects.requireNonNull(d);
      return this;
    }

    /** Lease TTL in seconds (the seed's {@code --etcd-ttl}). */
    public Builder ttlSeconds(int ttl) {
      this.ttlSeconds = ttl;
      return this;
    }

    /**
     * The host part of the {@code host:port} this pserver publishes. Default: the first
     * non-loopback IPv4 address of an interface that is up (as the seed), else 127.0.0.1.
     */
    public Builder advertiseHost(String host) {
      if (host != null && (host.isBlank() || host.contains(" "))) {
        throw new IllegalArgumentException("bad advertise host '" + host + "'");
      }
      this.advertiseHost = host;
      return this;
    }

    /** TLS and authentication to etcd (default: plaintext, no user). */
    public Builder security(EtcdSecurity s) {
      this.security = Objects.requireNonNull(s, "security");
      return this;
    }

    /** First and longest wait between retries (defaults 200 ms and 5 s, the seed's retry delay). */
    public Builder backoff(Duration initial, Duration max) {
      this.initialBackoff = requirePositive(initial, "initial backoff");
      this.maxBackoff = requirePositive(max, "max backoff");
      return this;
    }

    /** A client with these options; no I/O happens until the first call. */
    public EtcdClient build() {
      return new EtcdClient(this);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Registration

  /** {@link #register(int, int, Duration)} with no preferred index and no give-up time. */
  public int register(int port) throws IOException, InterruptedException {
    return register(port, -1, null);
  }

  /** {@link #register(int, int, Duration)} with no give-up time. */
  public int register(int port, int preferredIndex) throws IOException, InterruptedException {
    return register(port, preferredIndex, null);
  }

  /**
   * How long {@link #registerRemembered} should wait for a remembered index that is held: long
   * enough for a crashed predecessor's lease to expire, if it had the same TTL ({@code ttlSeconds},
   * but at least etcd's 2 s minimum with default settings) plus 2 s for etcd to notice the expiry
   * and for a slow restart. A predecessor that ran with a longer TTL may need longer.
   */
  public static Duration rememberedIndexWait(int ttlSeconds) {
    return Duration.ofSeconds(Math.max(ttlSeconds, 2) + 2L);
  }

  /**
   * Claims an index, preferring those this pserver served before (e.g. recorded in its checkpoint
   * directory, whose checkpoints it would load), and returns it, blocking until it has one.
   *
   * <ul>
   *   <li>The first free index of {@code remembered} (in the given order) is taken, whenever one is
   *       free.
   *   <li>While all of them are held, they are waited for at most {@code preferFor} (counted from
   *       the first time etcd answered), typically {@link #rememberedIndexWait}: the holder may be
   *       this pserver's own crashed predecessor, whose lease has not expired yet. After that the
   *       lowest free index is taken, and registration never blocks on a remembered index again.
   *   <li>Remembered indices not below {@code /ps_desired} (a record from an earlier job with more
   *       pservers) are ignored with a warning.
   * </ul>
   *
   * <p>Unlike {@link #register(int, int, Duration)}, a remembered index is a preference, never a
   * requirement: pservers sharing a checkpoint directory, or one whose index was taken over, still
   * register.
   *
   * @param remembered indices in order of preference (may be empty: the lowest free one)
   * @param preferFor how long to wait for a held remembered index
   * @param giveUpAfter as in {@link #register(int, int, Duration)}
   * @throws IllegalStateException if {@code register} was already called on this client
   * @throws IllegalArgumentException for a bad port, a negative remembered index or preferFor
   * @throws IOException as in {@link #register(int, int, Duration)}
   * @throws InterruptedException if interrupted; any lease granted on the way is revoked
   */
  public int registerRemembered(int port, List<Integer> remembered, Duration preferFor, Duration giveUpAfter)
      throws IOException, InterruptedException {
    List<Integer> r = List.copyOf(remembered);
    for (int i : r) {
      if (i < 0) {
        throw new IllegalArgumentException("remembered index must be >= 0, got " + i);
      }
    }
    if (preferFor == null || preferFor.isNegative()) {
      throw new IllegalArgumentException("preferFor must be >= 0, got " + preferFor);
    }
    return register(port, new Preference(-1, r, preferFor), giveUpAfter);
  }

  /**
   * Claims a pserver index and returns it, blocking until it has one.
   *
   * @param port published as {@code <advertise host>:<port>}
   * @param preferredIndex the index to wait for, as long as it is held (an operator's explicit
   *     choice, such as a StatefulSet ordinal), or -1 for the lowest free one. For an index merely
   *     remembered from an earlier run use {@link #registerRemembered}, which does not wait forever
   * @param giveUpAfter stop trying after this long (null: never; keep trying while etcd is
   *     unreachable or all slots are taken)
   * @throws IllegalStateException if {@code register} already succeeded on this client
   * @throws IllegalArgumentException for a bad port, or a preferred index not below {@code
   *     /ps_desired}
   * @throws IOException if the client was closed, or the give-up time passed (the message names
   *     the attempts and the last error); any lease granted on the way is revoked
   * @throws InterruptedException if interrupted; any lease granted on the way is revoked
   */
  public int register(int port, int preferredIndex, Duration giveUpAfter)
      throws IOException, InterruptedException {
    if (preferredIndex < -1) {
      throw new IllegalArgumentException("preferred index must be >= 0, or -1 for none; got " + preferredIndex);
    }
    return register(port, new Preference(preferredIndex, List.of(), Duration.ZERO), giveUpAfter);
  }

  /**
   * Which index registration goes for: {@code explicit} (>= 0: waited for as long as it is held),
   * else the first free of {@code remembered} (held ones waited for at most {@code preferFor}),
   * else the lowest free one.
   */
  private record Preference(int explicit, List<Integer> remembered, Duration preferFor) {}

  private int register(int port, Preference pref, Duration giveUpAfter) throws IOException, InterruptedException {
    if (port < 1 || port > 65535) {
      throw new IllegalArgumentException("port must be in 1..65535, got " + port);
    }
    String host = advertiseHost != null ? advertiseHost : detectAdvertiseHost();
    String addr = host + ":" + port;
    synchronized (lock) {
      if (state == State.CLOSED) {
        throw closedException();
      }
      if (state != State.UNREGISTERED) {
        throw new IllegalStateException("register() was already called on this client (state " + state + ")");
      }
      state = State.REGISTERING;
      fenced = true;
      address = addr;
    }
    Attempts attempts = new Attempts("register " + addr, giveUpAfter);
    boolean done = false;
    try {
      int n = ensureDesired(attempts);
      if (pref.explicit() >= n) {
        throw new IllegalArgumentException(
            "preferred index " + pref.explicit() + " is not below " + EtcdKeys.PS_DESIRED + "=" + n);
      }
      List<Integer> remembered = new ArrayList<>();
      for (int r : pref.remembered()) {
        if (r >= n) {
          log.warn(
              "remembered index {} is not below {}={} (a record from an earlier job?); ignoring it",
              r,
              EtcdKeys.PS_DESIRED,
              n);
        } else if (!remembered.contains(r)) {
          remembered.add(r);
        }
      }
      int i = claim(n, new Preference(pref.explicit(), remembered, pref.preferFor()), addr, attempts);
      done = true;
      return i;
    } finally {
      if (!done) {
        revokeHeldLease("registration did not complete");
        synchronized (lock) {
          if (state == State.REGISTERING) {
            state = State.UNREGISTERED;
          }
        }
      }
    }
  }

  /** Reads or initializes /ps_desired; retries (with backoff) while it is invalid or etcd fails. */
  private int ensureDesired(Attempts attempts) throws IOException, InterruptedException {
    Backoff backoff = newBackoff();
    ByteSequence key = bytes(EtcdKeys.PS_DESIRED);
    while (true) {
      checkOpen();
      String problem;
      boolean invalid;
      try {
        registrationAttempts.incrementAndGet();
        attempts.count++;
        TxnResponse r =
            call(
                etcd.getKVClient()
                    .txn()
                    .If(new Cmp(key, Cmp.Op.EQUAL, CmpTarget.version(0)))
                    .Then(Op.put(key, bytes(Integer.toString(desiredPservers)), PutOption.DEFAULT))
                    .Else(Op.get(key, GetOption.DEFAULT))
                    .commit(),
                "create " + EtcdKeys.PS_DESIRED);
        if (r.isSucceeded()) {
          log.info("wrote {}={} (on no lease: it outlives this pserver)", EtcdKeys.PS_DESIRED, desiredPservers);
          return remember(desiredPservers);
        }
        KeyValue kv = Etcd.txnGet(r, 0);
        String value = kv == null ? null : string(kv.getValue());
        OptionalInt n = EtcdKeys.parseDesired(value);
        if (n.isPresent()) {
          if (n.getAsInt() != desiredPservers) {
            log.warn(
                "{} is {} in etcd; this pserver was configured for {} and adopts {}",
                EtcdKeys.PS_DESIRED,
                n.getAsInt(),
                desiredPservers,
                n.getAsInt());
          }
          return remember(n.getAsInt());
        }
        problem =
            EtcdKeys.PS_DESIRED
                + " holds "
                + quote(value)
                + ", which is not a positive integer; no pserver can register until it is fixed"
                + " (etcdctl put "
                + EtcdKeys.PS_DESIRED
                + " <count>)";
        invalid = true;
      } catch (IOException e) {
        problem = e.getMessage();
        invalid = false;
      }
      attempts.last = problem;
      Duration d = backoff.next();
      if (invalid) {
        log.error("{}; re-reading in {}", problem, Etcd.format(d));
      } else {
        log.warn("{} (attempt {}); retrying in {}", problem, attempts.count, Etcd.format(d));
      }
      attempts.sleep(d);
    }
  }

  private int remember(int n) {
    synchronized (lock) {
      desired = n;
    }
    return n;
  }

  /** Claims the index {@code pref} asks for; waits (holding no lease) while it cannot. */
  private int claim(int n, Preference pref, String addr, Attempts attempts)
      throws IOException, InterruptedException {
    Backoff backoff = newBackoff();
    int racesLost = 0;
    int waits = 0;
    String lastWait = null;
    long preferSince = 0; // when etcd first answered (0: not yet); the remembered wait counts from it
    boolean preferenceOver = pref.remembered().isEmpty();
    while (true) {
      checkOpen();
      String waitReason;
      boolean waitingForRemembered = false;
      try {
        registrationAttempts.incrementAndGet();
        attempts.count++;
        GetResponse slots =
            call(
                etcd.getKVClient()
                    .get(bytes(EtcdKeys.PS_PREFIX), GetOption.builder().isPrefix(true).build()),
                "list " + EtcdKeys.PS_PREFIX);
        TreeMap<Integer, KeyValue> held = new TreeMap<>();
        for (KeyValue kv : slots.getKvs()) {
          OptionalInt i = EtcdKeys.parseIndex(string(kv.getKey()));
          if (i.isPresent() && i.getAsInt() < n) {
            held.put(i.getAsInt(), kv);
          }
        }
        long now = System.nanoTime();
        if (preferSince == 0) {
          preferSince = now;
        }
        int target = -1;
        waitReason = null;
        if (pref.explicit() >= 0) {
          KeyValue h = held.get(pref.explicit());
          target = pref.explicit();
          if (h != null) {
            waitReason =
                "preferred index " + target + " is held by " + quote(string(h.getValue())) + "; waiting for it";
          }
        } else {
          for (int r : pref.remembered()) {
            if (target < 0 && !held.containsKey(r)) {
              target = r;
            }
          }
          if (target < 0 && !preferenceOver) {
            long left = preferSince + pref.preferFor().toNanos() - now;
            String which = describe(held, pref.remembered());
            if (left > 0) {
              waitingForRemembered = true;
              waitReason =
                  "remembered index "
                      + which
                      + "; waiting up to "
                      + Etcd.format(pref.preferFor())
                      + " for it (a crashed predecessor's lease may not have expired yet)";
            } else {
              preferenceOver = true;
              log.warn(
                  "remembered index {} after {}; taking the lowest free index instead",
                  which,
                  Etcd.format(pref.preferFor()));
            }
          }
          for (int i = 0; i < n && target < 0 && waitReason == null; i++) {
            if (!held.containsKey(i)) {
              target = i;
            }
          }
          if (target < 0 && waitReason == null) {
            waitReason = "all " + n + " pserver slots are taken (" + describe(held) + "); waiting for one to free up";
          }
        }
        if (waitReason == null) {
          long lease = ensureLease();
          Claim c = claimTxn(target, addr, lease, -1);
          if (c.succeeded()) {
            install(target, lease, c.fence(), revisionOf(c.checkpoint()));
            log.info(
                "registered as pserver {} of {}: {}={} on lease {} (TTL {} s)",
                target,
                n,
                EtcdKeys.pserver(target),
                addr,
                hex(lease),
                heldTtl());
            return target;
          }
          if (++racesLost <= 2 * n) {
            continue; // someone else got it first; look again at once, same lease
          }
          waitReason = "lost the race for a free slot " + racesLost + " times in a row";
        }
        attempts.last = waitReason;
      } catch (Etcd.LeaseNotFoundException e) {
        log.info("lease vanished before the claim ({}); granting a new one", e.getMessage());
        dropHeldLease();
        continue;
      } catch (IOException e) {
        waitReason = e.getMessage();
        attempts.last = waitReason;
      }
      // Waiting: hold no lease, so waiting pservers do not pile up leases.
      revokeHeldLease("waiting for a slot");
      racesLost = 0;
      Duration d = backoff.next();
      if (waitingForRemembered && d.compareTo(REMEMBERED_POLL) > 0) {
        d = REMEMBERED_POLL; // bounded wait: notice the predecessor's key expiring promptly
      }
      if (!waitReason.equals(lastWait) || ++waits % 10 == 0) {
        log.info("{}; retrying in {}", waitReason, Etcd.format(d));
      } else {
        log.debug("{}; retrying in {}", waitReason, Etcd.format(d));
      }
      lastWait = waitReason;
      attempts.sleep(d);
    }
  }

  /** "1 is held by 'h:p'" or "1, 3 are held by 'h:p', 'h:q'". */
  private static String describe(TreeMap<Integer, KeyValue> held, List<Integer> indices) {
    List<String> holders = new ArrayList<>();
    for (int i : indices) {
      KeyValue kv = held.get(i);
      holders.add(kv == null ? "(none)" : quote(string(kv.getValue())));
    }
    String is = indices.size() == 1 ? " is" : " are";
    return String.join(", ", indices.stream().map(String::valueOf).toList()) + is + " held by " + String.join(", ", holders);
  }

  private static String describe(TreeMap<Integer, KeyValue> held) {
    StringBuilder b = new StringBuilder();
    held.forEach(
        (i, kv) -> {
          if (b.length() > 0) {
            b.append(", ");
          }
          b.append(i).append('=').append(quote(string(kv.getValue())));
        });
    return b.toString();
  }

  /**
   * The outcome of a claim transaction: {@code fence > 0} if we hold {@code /ps/<index>} (claimed
   * now, or by an earlier try of ours that did land); otherwise {@code holder} is whoever holds it
   * (null: nobody, so the {@code /checkpoints/<index>} comparison failed). {@code checkpoint} is
   * {@code /checkpoints/<index>} as of the transaction (null: absent).
   */
  private record Claim(long fence, KeyValue holder, KeyValue checkpoint) {
    boolean succeeded() {
      return fence > 0;
    }
  }

  /**
   * Creates {@code /ps/<index>} on {@code lease} if it is absent and, when {@code
   * checkpointRevision >= 0}, only if {@code /checkpoints/<index>} still has that mod revision (0:
   * still absent). Reads {@code /checkpoints/<index>} in the same transaction either way.
   * Recognizes our own earlier claim (a retried transaction whose first try did land).
   */
  private Claim claimTxn(int index, String addr, long lease, long checkpointRevision)
      throws IOException, InterruptedException {
    ByteSequence key = bytes(EtcdKeys.pserver(index));
    ByteSequence checkpoint = bytes(EtcdKeys.checkpoint(index));
    Cmp free = new Cmp(key, Cmp.Op.EQUAL, CmpTarget.createRevision(0));
    Cmp[] conditions =
        checkpointRevision < 0
            ? new Cmp[] {free}
            : new Cmp[] {free, new Cmp(checkpoint, Cmp.Op.EQUAL, CmpTarget.modRevision(checkpointRevision))};
    TxnResponse r =
        call(
            etcd.getKVClient()
                .txn()
                .If(conditions)
                .Then(
                    Op.put(key, bytes(addr), PutOption.builder().withLeaseId(lease).build()),
                    Op.get(checkpoint, GetOption.DEFAULT))
                .Else(Op.get(key, GetOption.DEFAULT), Op.get(checkpoint, GetOption.DEFAULT))
                .commit(),
            "claim " + EtcdKeys.pserver(index));
    if (r.isSucceeded()) {
      return new Claim(r.getHeader().getRevision(), null, Etcd.txnGet(r, 0));
    }
    KeyValue kv = Etcd.txnGet(r, 0);
    KeyValue cp = Etcd.txnGet(r, 1);
    if (kv != null && kv.getLease() == lease && addr.equals(string(kv.getValue()))) {
      return new Claim(kv.getModRevision(), null, cp);
    }
    return new Claim(0, kv, cp);
  }

  private static long revisionOf(KeyValue kv) {
    return kv == null ? 0 : kv.getModRevision();
  }

  /** The held lease if it is provably alive, else a renewed or new one. */
  private long ensureLease() throws IOException, InterruptedException {
    long lease;
    synchronized (lock) {
      lease = heldLease;
      if (lease != 0 && System.nanoTime() - (heldSentNanos + LeaseKeeper.bound(heldTtl)) < 0) {
        return lease;
      }
    }
    if (lease != 0 && renewHeldLease(lease)) {
      return lease;
    }
    long sent = System.nanoTime();
    LeaseGrantResponse g = call(etcd.getLeaseClient().grant(ttlSeconds), "grant a lease");
    synchronized (lock) {
      if (state == State.CLOSED) {
        try {
          etcd.getLeaseClient().revoke(g.getID()); // best effort; it expires after its TTL anyway
        } catch (RuntimeException e) {
          log.debug("revoking lease {} after close: {}", hex(g.getID()), e.toString());
        }
        throw closedException();
      }
      heldLease = g.getID();
      heldSentNanos = sent;
      heldTtl = g.getTTL();
    }
    if (g.getTTL() != ttlSeconds) {
      log.info("etcd granted lease {} with TTL {} s (asked for {} s)", hex(g.getID()), g.getTTL(), ttlSeconds);
    } else {
      log.debug("granted lease {} (TTL {} s)", hex(g.getID()), g.getTTL());
    }
    return g.getID();
  }

  /** Sends one keep-alive for {@code lease}; false (and forgets it) if etcd no longer knows it. */
  private boolean renewHeldLease(long lease) throws IOException, InterruptedException {
    long sent = System.nanoTime();
    try {
      LeaseKeepAliveResponse r =
          Etcd.await(
              etcd.getLeaseClient().keepAliveOnce(lease),
              keepAliveTimeout,
              "keep-alive of lease " + hex(lease),
              endpoints);
      synchronized (lock) {
        if (heldLease == lease) {
          heldSentNanos = sent;
          heldTtl = r.getTTL();
        }
      }
      return true;
    } catch (Etcd.LeaseNotFoundException e) {
      log.info("lease {} no longer exists (expired or revoked)", hex(lease));
      dropHeldLease();
      return false;
    }
  }

  private long heldTtl() {
    synchronized (lock) {
      return heldTtl;
    }
  }

  private void dropHeldLease() {
    synchronized (lock) {
      heldLease = 0;
    }
  }

  /** Revokes the held lease, if any; failures are logged (the lease then expires by its TTL). */
  private void revokeHeldLease(String why) {
    long lease;
    synchronized (lock) {
      lease = heldLease;
      heldLease = 0;
    }
    if (lease == 0) {
      return;
    }
    try {
      Etcd.awaitCleanup(etcd.getLeaseClient().revoke(lease), dialTimeout, "revoke lease " + hex(lease), endpoints);
      log.debug("revoked lease {} ({})", hex(lease), why);
    } catch (IOException e) {
      if (!Etcd.isLeaseNotFound(e)) {
        log.warn("{}; it expires by itself within {} s", e.getMessage(), ttlSeconds);
      }
    }
  }

  /**
   * Makes a verified claim the current ownership: keeper, key watch, state, and the revision of
   * {@code /checkpoints/<idx>} that a later re-registration compares against.
   */
  private void install(int idx, long lease, long fence, long checkpointRev) throws IOException {
    synchronized (lock) {
      if (state == State.CLOSED) {
        throw closedException();
      }
      if (checkpointRev != checkpointRevision) {
        checkpointRevision = checkpointRev;
        unconfirmedCheckpoints.clear();
      }
      LeaseKeeper keeper =
          new LeaseKeeper(
              etcd.getLeaseClient(),
              lease,
              heldTtl,
              heldSentNanos,
              scheduler,
              keepAliveTimeout,
              endpoints,
              this::onLeaseLost);
      Ownership o = new Ownership(idx, lease, fence, keeper);
      index = idx;
      state = State.OWNER;
      own = o;
      keeper.start();
      o.watcher = watchKey(o, fence + 1);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Losing and regaining ownership

  private void onLeaseLost(LeaseKeeper keeper, String reason) {
    Ownership o = own;
    if (o != null && o.keeper == keeper) {
      lose(o, reason);
    }
  }

  /** Ends ownership {@code o} (if still current), tells listeners, starts re-registration. */
  private void lose(Ownership o, String reason) {
    synchronized (lock) {
      if (own != o || state != State.OWNER) {
        return;
      }
      own = null;
      state = State.LOST;
      o.keeper.stop();
      closeWatcher(o);
      // Keep the lease: if it is still alive, re-registration reuses it.
      heldSentNanos = o.keeper.lastSentNanos();
      heldTtl = o.keeper.ttlSeconds();
    }
    log.error(
        "pserver {} lost ownership of {}: {}. Fenced writes are refused; re-registering the same index.",
        o.index,
        EtcdKeys.pserver(o.index),
        reason);
    emit(l -> l.ownershipLost(o.index, reason));
    try {
      registrar.execute(this::reRegister);
    } catch (RejectedExecutionException closing) {
      // closed meanwhile
    }
  }

  /** Background loop: reclaim the same index, or report that it was taken over. */
  private void reRegister() {
    Backoff backoff = newBackoff();
    int failures = 0;
    while (closedLatch.getCount() > 0) {
      try {
        if (reclaimOnce()) {
          return;
        }
      } catch (InterruptedException e) {
        return; // closing
      } catch (IOException e) {
        failures++;
        if (failures == 1 || failures % 10 == 0) {
          log.warn("re-registration attempt {} failed: {}", failures, e.getMessage());
        } else {
          log.debug("re-registration attempt {} failed: {}", failures, e.getMessage());
        }
      } catch (RuntimeException e) {
        failures++;
        log.error("re-registration attempt {} failed unexpectedly", failures, e);
      }
      try {
        if (closedLatch.await(backoff.next().toNanos(), TimeUnit.NANOSECONDS)) {
          return;
        }
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  /**
   * One re-registration attempt; true when finished (regained, taken over, or not needed).
   *
   * <p>{@code /ps/<index>} being free is not enough to reclaim it: while this pserver was cut off,
   * another one may have owned the index, acknowledged writes, published a checkpoint of them and
   * gone away. Claiming the index back with this pserver's in-memory state would silently drop
   * those writes. So the claim is conditional on {@code /checkpoints/<index>} still having the
   * revision this pserver last saw (at its claim or its own newest write); if it changed, that is
   * a takeover, as if the other pserver still held the index.
   */
  private boolean reclaimOnce() throws IOException, InterruptedException {
    int idx;
    String addr;
    long lease;
    long checkpointRev;
    synchronized (lock) {
      if (state != State.LOST) {
        return true;
      }
      idx = index;
      addr = address;
      lease = heldLease;
      checkpointRev = checkpointRevision;
    }
    registrationAttempts.incrementAndGet();
    if (lease != 0 && !renewHeldLease(lease)) {
      lease = 0;
    }
    String key = EtcdKeys.pserver(idx);
    KeyValue kv = Etcd.first(call(etcd.getKVClient().get(bytes(key)), "read " + key));
    if (kv == null) {
      if (lease == 0) {
        lease = ensureLease();
      }
      Claim c = claimTxn(idx, addr, lease, checkpointRev);
      if (c.succeeded()) {
        return regained(idx, lease, c.fence(), revisionOf(c.checkpoint()));
      }
      kv = c.holder();
      if (kv == null) {
        return checkpointChanged(idx, checkpointRev, c.checkpoint());
      }
    }
    if (lease != 0 && kv.getLease() == lease && addr.equals(string(kv.getValue()))) {
      // Our claim survived (e.g. etcd restarted): nobody else can have owned the index meanwhile.
      return regained(idx, lease, kv.getModRevision(), checkpointRev);
    }
    String holder = string(kv.getValue());
    return takenOver(idx, holder, key + " is now held by " + quote(holder) + " (lease " + hex(kv.getLease()) + ")");
  }

  /**
   * {@code /ps/<idx>} was free but {@code /checkpoints/<idx>} is no longer what this pserver last
   * saw. If it holds one of our own writes whose outcome was unknown, adopt it and try again
   * (false); otherwise another pserver owned the index meanwhile: a takeover (true).
   */
  private boolean checkpointChanged(int idx, long expected, KeyValue now) {
    String key = EtcdKeys.checkpoint(idx);
    synchronized (lock) {
      if (now != null) {
        byte[] v = now.getValue().getBytes();
        for (byte[] mine : unconfirmedCheckpoints) {
          if (Arrays.equals(mine, v)) {
            log.info(
                "{} holds this pserver's own write whose answer was lost (revision {}); claiming {} again",
                key,
                now.getModRevision(),
                EtcdKeys.pserver(idx));
            checkpointRevision = now.getModRevision();
            unconfirmedCheckpoints.clear();
            return false;
          }
        }
      }
    }
    String what =
        now == null
            ? key + " was deleted"
            : key + " was rewritten at revision " + now.getModRevision() + ", after revision " + expected + " that this pserver last saw";
    return takenOver(
        idx,
        "another pserver, since gone (" + what + ")",
        EtcdKeys.pserver(idx) + " is free, but " + what + ": another pserver owned index " + idx
            + " meanwhile, and its acknowledged, checkpointed updates must not be dropped");
  }

  /** Ends a lost ownership for good: revokes the lease, reports {@code indexTakenOver}. */
  private boolean takenOver(int idx, String holder, String detail) {
    revokeHeldLease("index taken over");
    synchronized (lock) {
      if (state != State.LOST) {
        return true;
      }
      state = State.TAKEN_OVER;
    }
    String addr = address();
    log.error(
        "{}: another pserver took index {} while this one ({}) was not the owner. Not claiming any"
            + " other index.",
        detail,
        idx,
        addr);
    emit(l -> l.indexTakenOver(idx, holder));
    return true;
  }

  private boolean regained(int idx, long lease, long fence, long checkpointRev) throws IOException {
    synchronized (lock) {
      if (state != State.LOST) {
        return true;
      }
      install(idx, lease, fence, checkpointRev);
    }
    log.info("pserver {} regained ownership of {} on lease {}", idx, EtcdKeys.pserver(idx), hex(lease));
    emit(l -> l.ownershipRegained(idx));
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Watching our own key

  private Watch.Watcher watchKey(Ownership o, long fromRevision) {
    WatchOption opt = WatchOption.builder().withRevision(fromRevision).build();
    return etcd.getWatchClient()
        .watch(
            bytes(EtcdKeys.pserver(o.index)),
            opt,
            Watch.listener(
                r -> onScheduler(() -> keyEvents(o, r)),
                t -> log.debug("watch of {} interrupted: {}", EtcdKeys.pserver(o.index), t.toString()),
                () -> onScheduler(() -> keyWatchEnded(o))));
  }

  private void keyEvents(Ownership o, WatchResponse r) {
    for (WatchEvent e : r.getEvents()) {
      if (e.getEventType() == WatchEvent.EventType.DELETE) {
        lose(o, EtcdKeys.pserver(o.index) + " was deleted (lease revoked or expired, or key removed)");
        return;
      }
      if (e.getKeyValue().getModRevision() != o.fence) {
        lose(
            o,
            EtcdKeys.pserver(o.index)
                + " was overwritten with "
                + quote(string(e.getKeyValue().getValue()))
                + " (lease "
                + hex(e.getKeyValue().getLease())
                + ")");
        return;
      }
    }
  }

  /** jetcd gave up on the watch (compaction, halt error): verify the key, then watch again. */
  private void keyWatchEnded(Ownership o) {
    if (own != o) {
      return;
    }
    scheduler.schedule(() -> rewatch(o), 500, TimeUnit.MILLISECONDS);
  }

  private void rewatch(Ownership o) {
    if (own != o) {
      return;
    }
    String key = EtcdKeys.pserver(o.index);
    etcd.getKVClient()
        .get(bytes(key))
        .whenComplete(
            (r, t) ->
                onScheduler(
                    () -> {
                      if (own != o) {
                        return;
                      }
                      if (t != null) {
                        keyWatchEnded(o); // etcd unreachable: the keeper handles ownership; retry
                        return;
                      }
                      KeyValue kv = Etcd.first(r);
                      if (kv == null || kv.getModRevision() != o.fence) {
                        lose(o, key + " changed while it was not watched");
                        return;
                      }
                      synchronized (lock) {
                        if (own == o) {
                          closeWatcher(o);
                          o.watcher = watchKey(o, r.getHeader().getRevision() + 1);
                        }
                      }
                    }));
  }

  private void closeWatcher(Ownership o) {
    Watch.Watcher w = o.watcher;
    o.watcher = null;
    if (w != null) {
      try {
        w.close();
      } catch (RuntimeException e) {
        log.debug("closing the watch of {}: {}", EtcdKeys.pserver(o.index), e.toString());
      }
    }
  }

  private void onScheduler(Runnable r) {
    try {
      scheduler.execute(r);
    } catch (RejectedExecutionException closing) {
      // closed
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Status

  /**
   * True only while ownership of the index is provable: registered, the claim not seen deleted or
   * changed, and the last acknowledged keep-alive recent enough that the lease cannot have expired.
   */
  public boolean isOwner() {
    Ownership o = own;
    return o != null && o.keeper.isValid() && closedLatch.getCount() > 0;
  }

  /** How much longer ownership is provable without another keep-alive; zero if not the owner. */
  public Duration ownershipRemaining() {
    Ownership o = own;
    if (o == null || !isOwner()) {
      return Duration.ZERO;
    }
    return Duration.ofNanos(Math.max(0, o.keeper.validUntilNanos() - System.nanoTime()));
  }

  /** The index this client claimed (kept after a loss), or empty before the first claim. */
  public OptionalInt index() {
    synchronized (lock) {
      return index < 0 ? OptionalInt.empty() : OptionalInt.of(index);
    }
  }

  /** The {@code /ps_desired} value registration used, or empty before it was read. */
  public OptionalInt desired() {
    synchronized (lock) {
      return desired < 0 ? OptionalInt.empty() : OptionalInt.of(desired);
    }
  }

  /** The published {@code host:port}, or null before {@code register}. */
  public String address() {
    synchronized (lock) {
      return address;
    }
  }

  /** Where the client stands now; OWNER only while {@link #isOwner()} also holds. */
  public State state() {
    synchronized (lock) {
      if (state == State.OWNER && !isOwner()) {
        return State.LOST; // the deadline passed; the loss handler is about to run
      }
      return state;
    }
  }

  /** The lease this client holds now (0: none). For tests and logs. */
  long leaseId() {
    synchronized (lock) {
      return heldLease;
    }
  }

  /**
   * Stops watching {@code /ps/<index>} without giving up ownership, as if the watch were late.
   * Tests use it to show that fencing does not depend on the watch (etcd watches are not
   * linearizable with other operations; the fenced transaction is).
   */
  void suspendKeyWatchForTest() {
    synchronized (lock) {
      Ownership o = own;
      if (o != null) {
        Watch.Watcher w = o.watcher;
        o.watcher = null;
        if (w != null) {
          own = null; // so that the watcher's completion does not schedule a re-watch
          w.close();
          own = o;
        }
      }
    }
  }

  /** When the newest acknowledged keep-alive of the owned lease was sent ({@code nanoTime}). */
  long lastKeepAliveSentNanos() {
    Ownership o = own;
    return o == null ? 0 : o.keeper.lastSentNanos();
  }

  /** Until when ({@code nanoTime}) ownership is provable; 0 if not the owner. */
  long validUntilNanos() {
    Ownership o = own;
    return o == null ? 0 : o.keeper.validUntilNanos();
  }

  /** Adds a listener for ownership events after {@code register} (see {@link OwnershipListener}). */
  public void addListener(OwnershipListener l) {
    listeners.add(Objects.requireNonNull(l));
  }

  /** Removes a listener; events already queued for it may still arrive. */
  public void removeListener(OwnershipListener l) {
    listeners.remove(l);
  }

  private void emit(Consumer<OwnershipListener> event) {
    for (OwnershipListener l : listeners) {
      try {
        events.execute(
            () -> {
              try {
                event.accept(l);
              } catch (RuntimeException e) {
                log.warn("ownership listener {} threw", l, e);
              }
            });
      } catch (RejectedExecutionException closing) {
        return;
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // KVStore

  /**
   * The value of {@code key}, or an empty array if it is absent. Reads are never fenced.
   *
   * @throws IOException if etcd does not answer within {@code min(timeout, dial timeout)}
   */
  @Override
  public byte[] get(String key, Duration timeout) throws IOException {
    checkOpenIo();
    GetResponse r =
        Etcd.awaitIo(etcd.getKVClient().get(bytes(key)), min(timeout), "get " + key, endpoints);
    KeyValue kv = Etcd.first(r);
    return kv == null ? new byte[0] : kv.getValue().getBytes();
  }

  /**
   * Writes {@code key}. On a client that called {@code register}, the write is fenced (see the
   * class comment) and {@code withLease} attaches it to the ownership lease; on a client that never
   * registered, it is a plain put and {@code withLease} is an error.
   *
   * @throws NotOwnerException if ownership is not provable (etcd not called) or the fencing
   *     comparison failed; nothing was written
   * @throws IOException on any other failure; the write may or may not have happened
   * @throws IllegalStateException for {@code withLease} on an unregistered client
   */
  @Override
  public void put(String key, byte[] value, Duration timeout, boolean withLease) throws IOException {
    checkOpenIo();
    ByteSequence k = bytes(key);
    ByteSequence v = ByteSequence.from(value);
    boolean isFenced;
    int idx;
    synchronized (lock) {
      isFenced = fenced;
      idx = index;
    }
    if (!isFenced) {
      if (withLease) {
        throw new IllegalStateException(
            "put(" + key + ", withLease=true) needs a registered pserver: this client has no lease");
      }
      Etcd.awaitIo(etcd.getKVClient().put(k, v), min(timeout), "put " + key, endpoints);
      return;
    }
    Ownership o = own;
    if (o == null || !o.keeper.isValid()) {
      throw new NotOwnerException(
          "refusing to write "
              + key
              + ": this pserver cannot prove it owns "
              + (idx < 0 ? "an index" : EtcdKeys.pserver(idx))
              + " (state "
              + state()
              + ")");
    }
    PutOption po = withLease ? PutOption.builder().withLeaseId(o.leaseId).build() : PutOption.DEFAULT;
    boolean checkpoint = key.equals(EtcdKeys.checkpoint(o.index));
    TxnResponse r;
    try {
      r =
          Etcd.awaitIo(
              etcd.getKVClient()
                  .txn()
                  .If(new Cmp(bytes(EtcdKeys.pserver(o.index)), Cmp.Op.EQUAL, CmpTarget.modRevision(o.fence)))
                  .Then(Op.put(k, v, po))
                  .commit(),
              min(timeout),
              "fenced put " + key,
              endpoints);
    } catch (Etcd.LeaseNotFoundException e) {
      lose(o, "etcd rejected a put on lease " + hex(o.leaseId) + ": " + e.getMessage());
      throw new NotOwnerException("refusing to write " + key + ": the ownership lease is gone");
    } catch (IOException e) {
      if (checkpoint) {
        checkpointWriteUnknown(value);
      }
      throw e;
    }
    if (!r.isSucceeded()) {
      String why = EtcdKeys.pserver(o.index) + " is gone or changed (fenced put of " + key + " refused)";
      lose(o, why);
      throw new NotOwnerException("refusing to write " + key + ": " + why + "; nothing was written");
    }
    if (checkpoint) {
      checkpointWritten(r.getHeader().getRevision());
    }
  }

  /** Our fenced put of /checkpoints/<index> landed at {@code revision}: the new baseline. */
  private void checkpointWritten(long revision) {
    synchronized (lock) {
      if (revision > checkpointRevision) {
        checkpointRevision = revision;
        unconfirmedCheckpoints.clear();
      }
    }
  }

  /** Our fenced put of /checkpoints/<index> may or may not have landed: remember its value. */
  private void checkpointWriteUnknown(byte[] value) {
    synchronized (lock) {
      if (unconfirmedCheckpoints.size() >= MAX_UNCONFIRMED) {
        unconfirmedCheckpoints.remove(0);
      }
      unconfirmedCheckpoints.add(value.clone());
    }
  }

  private Duration min(Duration timeout) {
    return timeout == null || timeout.compareTo(dialTimeout) > 0 ? dialTimeout : timeout;
  }

  // ---------------------------------------------------------------------------------------------
  // Shutdown

  /** The seed's name for {@link #close()}. */
  public void shutdown() {
    close();
  }

  /**
   * Revokes the lease (so {@code /ps/<index>} disappears at once), stops the background threads
   * and closes the etcd connection. Idempotent; never throws (failures are logged). Listeners get
   * no event for a close.
   */
  @Override
  public void close() {
    Ownership o;
    synchronized (lock) {
      if (state == State.CLOSED) {
        return;
      }
      state = State.CLOSED;
      o = own;
      own = null;
      if (o != null) {
        o.keeper.stop();
        closeWatcher(o);
      }
    }
    closedLatch.countDown();
    registrar.shutdownNow();
    revokeHeldLease("shutdown");
    if (o != null) {
      log.info("pserver {} shut down: {} released", o.index, EtcdKeys.pserver(o.index));
    }
    scheduler.shutdownNow();
    events.shutdown();
    try {
      etcd.close();
    } catch (RuntimeException e) {
      log.warn("closing the etcd connection: {}", e.toString());
    }
  }

  private void checkOpen() throws IOException {
    if (closedLatch.getCount() == 0) {
      throw closedException();
    }
  }

  private void checkOpenIo() throws IOException {
    checkOpen();
  }

  private IOException closedException() {
    return new IOException("etcd client for " + endpoints + " is closed");
  }

  private Backoff newBackoff() {
    return new Backoff(initialBackoff, maxBackoff);
  }

  /** An etcd call bounded by the dial timeout (the gRPC deadline is the same). */
  private <T> T call(CompletableFuture<T> f, String what) throws IOException, InterruptedException {
    return Etcd.await(f, dialTimeout, what, endpoints);
  }

  /** Attempt counting, give-up time and interruptible sleeping for one register() call. */
  private final class Attempts {
    final String what;
    final long startNanos = System.nanoTime();
    final long giveUpNanos; // 0: never
    int count;
    String last = "none";

    Attempts(String what, Duration giveUpAfter) {
      this.what = what;
      this.giveUpNanos = giveUpAfter == null ? 0 : Math.max(1, giveUpAfter.toNanos());
    }

    void sleep(Duration d) throws IOException, InterruptedException {
      long nanos = d.toNanos();
      if (giveUpNanos > 0) {
        long left = startNanos + giveUpNanos - System.nanoTime();
        if (left <= nanos) {
          if (left > 0 && closedLatch.await(left, TimeUnit.NANOSECONDS)) {
            throw closedException();
          }
          throw new IOException(
              what
                  + ": gave up after "
                  + Etcd.format(Duration.ofNanos(System.nanoTime() - startNanos))
                  + " and "
                  + count
                  + " attempt(s); last error: "
                  + last);
        }
      }
      if (closedLatch.await(nanos, TimeUnit.NANOSECONDS)) {
        throw closedException();
      }
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** The seed's external IP rule: first non-loopback IPv4 of an up interface, by index. */
  static String detectAdvertiseHost() {
    try {
      List<NetworkInterface> nics = new ArrayList<>(Collections.list(NetworkInterface.getNetworkInterfaces()));
      nics.sort(Comparator.comparingInt(NetworkInterface::getIndex));
      for (NetworkInterface ni : nics) {
        if (!ni.isUp() || ni.isLoopback()) {
          continue;
        }
        for (InetAddress a : Collections.list(ni.getInetAddresses())) {
          if (a instanceof Inet4Address && !a.isLoopbackAddress()) {
            return a.getHostAddress();
          }
        }
      }
    } catch (SocketException e) {
      log.warn("could not list network interfaces: {}", e.toString());
    }
    log.warn(
        "no non-loopback IPv4 address found; advertising 127.0.0.1, which only trainers on this"
            + " machine can reach (set the advertise address)");
    return "127.0.0.1";
  }

  private static Duration requirePositive(Duration d, String what) {
    if (d == null || d.isNegative() || d.isZero()) {
      throw new IllegalArgumentException(what + " must be > 0, got " + d);
    }
    return d;
  }
}
