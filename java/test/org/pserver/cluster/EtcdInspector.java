package org.pserver.cluster;

import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import io.etcd.jetcd.ByteSequence;
import io.etcd.jetcd.Client;
import io.etcd.jetcd.KeyValue;
import io.etcd.jetcd.Watch;
import io.etcd.jetcd.options.DeleteOption;
import io.etcd.jetcd.options.GetOption;
import io.etcd.jetcd.options.WatchOption;
import io.etcd.jetcd.watch.WatchEvent;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Reads and watches a test {@link EtcdServer} in-process (jetcd, plus etcd's JSON gateway for the
 * lease list, which jetcd 0.8.5 lacks), for checks that run often or are timed: no process is
 * spawned, unlike {@link EtcdServer#keys} and {@link EtcdServer#leases}, whose {@code etcdctl} runs
 * can take most of a second each on a loaded machine. Those stay the independent proof of the key
 * layout; use this one inside loops and for timing.
 *
 * <p>Traps: every call waits at most 10 s and fails with {@link IllegalStateException}; while etcd
 * is stopped, calls fail (after that wait) and a {@link #deletion} watch resumes when it is back.
 */
public final class EtcdInspector implements AutoCloseable {
  private static final long WAIT_SECONDS = 10;
  private final EtcdServer etcd;
  private final Client client;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
  private final List<Watch.Watcher> watchers = new ArrayList<>();

  public EtcdInspector(EtcdServer etcd) {
    this.etcd = etcd;
    this.client = Client.builder().endpoints(etcd.endpoint()).build();
  }

  /** Every key under {@code prefix}, in key order, as {@link EtcdServer#keys} reports it. */
  public Map<String, EtcdServer.Kv> keys(String prefix) {
    Map<String, EtcdServer.Kv> out = new TreeMap<>();
    for (KeyValue kv : await(client.getKVClient().get(bytes(prefix), GetOption.builder().isPrefix(true).build())).getKvs()) {
      String key = kv.getKey().toString(StandardCharsets.UTF_8);
      out.put(key, new EtcdServer.Kv(key, kv.getValue().toString(StandardCharsets.UTF_8), kv.getLease(),
          kv.getCreateRevision(), kv.getModRevision()));
    }
    return out;
  }

  /** The IDs of all leases that exist now. */
  public List<Long> leaseIds() {
    HttpRequest req = HttpRequest.newBuilder(URI.create(etcd.endpoint() + "/v3/lease/leases"))
        .timeout(Duration.ofSeconds(WAIT_SECONDS))
        .POST(HttpRequest.BodyPublishers.ofString("{}"))
        .build();
    String body;
    try {
      HttpResponse<String> r = http.send(req, HttpResponse.BodyHandlers.ofString());
      if (r.statusCode() != 200) {
        throw new IllegalStateException("etcd's lease list answered " + r.statusCode() + ": " + r.body());
      }
      body = r.body();
    } catch (IOException e) {
      throw new IllegalStateException("listing leases: " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted listing leases", e);
    }
    List<Long> ids = new ArrayList<>();
    JsonElement leases = JsonParser.parseString(body).getAsJsonObject().get("leases");
    if (leases != null) {
      for (JsonElement l : leases.getAsJsonArray()) {
        ids.add(Long.parseLong(l.getAsJsonObject().get("ID").getAsString()));
      }
    }
    return ids;
  }

  /** Deletes every key and revokes every lease, as {@link EtcdServer#reset} does. */
  public void reset() {
    await(client.getKVClient().delete(bytes("\0"), DeleteOption.builder().withRange(bytes("\0")).build()));
    for (long id : leaseIds()) {
      try {
        await(client.getLeaseClient().revoke(id));
      } catch (IllegalStateException e) {
        // expired between list and revoke: fine
      }
    }
  }

  /**
   * Watches {@code key} from now on: the future completes with the {@link System#nanoTime()} at
   * which its deletion was seen (for a key on a lease: when the lease was revoked or expired).
   */
  public CompletableFuture<Long> deletion(String key) {
    CompletableFuture<Long> f = new CompletableFuture<>();
    long from = await(client.getKVClient().get(bytes(key))).getHeader().getRevision() + 1;
    Watch.Watcher w = client.getWatchClient().watch(bytes(key), WatchOption.builder().withRevision(from).build(),
        r -> {
          for (WatchEvent e : r.getEvents()) {
            if (e.getEventType() == WatchEvent.EventType.DELETE) {
              f.complete(System.nanoTime());
            }
          }
        });
    synchronized (watchers) {
      watchers.add(w);
    }
    return f;
  }

  @Override
  public void close() {
    synchronized (watchers) {
      watchers.forEach(Watch.Watcher::close);
    }
    client.close();
  }

  private static ByteSequence bytes(String s) {
    return ByteSequence.from(s, StandardCharsets.UTF_8);
  }

  private static <T> T await(CompletableFuture<T> f) {
    try {
      return f.get(WAIT_SECONDS, TimeUnit.SECONDS);
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("etcd call failed: " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }
}
