package org.pserver.cluster;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A loopback TCP forwarder that a test can cut and restore, to partition one client from etcd
 * while others still reach it (the "pserver cut off from etcd" fault).
 *
 * <pre>{@code
 * try (TcpProxy proxy = new TcpProxy(etcd.clientPort())) {
 *   EtcdClient a = new EtcdClient(proxy.endpoint(), ...);   // a talks to etcd through the proxy
 *   proxy.cut();      // a's connections are reset and new ones are closed at once
 *   proxy.restore();  // a can reconnect
 * }
 * }</pre>
 *
 * <p>Traps: a cut closes connections (the client sees resets and refused reconnects), it does not
 * black-hole them; gRPC clients then reconnect with their own exponential backoff, so after
 * {@link #restore()} the first successful call may take a second or more. Listens on 127.0.0.1
 * only and forwards only to 127.0.0.1.
 */
public final class TcpProxy implements AutoCloseable {
  private final int targetPort;
  private final ServerSocket listener;
  private final Set<Socket> open = ConcurrentHashMap.newKeySet();
  private final Thread acceptor;
  private volatile boolean cut;
  private volatile boolean muted;
  private volatile boolean closed;

  /** Starts forwarding a free loopback port to {@code 127.0.0.1:targetPort}. */
  public TcpProxy(int targetPort) throws IOException {
    this.targetPort = targetPort;
    this.listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    this.acceptor = new Thread(this::acceptLoop, "tcp-proxy-" + listener.getLocalPort());
    acceptor.setDaemon(true);
    acceptor.start();
  }

  public int port() {
    return listener.getLocalPort();
  }

  /** {@code http://127.0.0.1:<port>}: an etcd endpoint that goes through this proxy. */
  public String endpoint() {
    return "http://127.0.0.1:" + port();
  }

  /** Resets every forwarded connection and closes new ones as soon as they are accepted. */
  public void cut() {
    cut = true;
    for (Socket s : open) {
      closeQuietly(s);
    }
    open.clear();
  }

  /**
   * Keeps forwarding what clients send but drops everything etcd answers: requests still take
   * effect while their replies never arrive (an outcome the client cannot know). The connections
   * are garbled from then on: follow with {@link #cut()}, then {@link #restore()}.
   */
  public void muteReplies() {
    muted = true;
  }

  /** Forwards new connections again (and replies, after {@link #muteReplies()}). */
  public void restore() {
    muted = false;
    cut = false;
  }

  public boolean isCut() {
    return cut;
  }

  @Override
  public void close() {
    closed = true;
    cut();
    try {
      listener.close();
    } catch (IOException e) {
      // closing
    }
  }

  private void acceptLoop() {
    while (!closed) {
      Socket in;
      try {
        in = listener.accept();
      } catch (IOException e) {
        return; // closed
      }
      if (cut) {
        closeQuietly(in);
        continue;
      }
      Socket out = new Socket();
      try {
        out.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), targetPort), 1000);
      } catch (IOException e) {
        closeQuietly(in);
        closeQuietly(out);
        continue;
      }
      open.add(in);
      open.add(out);
      pump(in, out, false);
      pump(out, in, true);
    }
  }

  private void pump(Socket from, Socket to, boolean replies) {
    Thread t =
        new Thread(
            () -> {
              byte[] buf = new byte[16 * 1024];
              try (InputStream i = from.getInputStream();
                  OutputStream o = to.getOutputStream()) {
                int n;
                while ((n = i.read(buf)) >= 0) {
                  if (replies && muted) {
                    continue;
                  }
                  o.write(buf, 0, n);
                  o.flush();
                }
              } catch (SocketException e) {
                // reset or closed by cut()
              } catch (IOException e) {
                // same
              } finally {
                closeQuietly(from);
                closeQuietly(to);
                open.remove(from);
                open.remove(to);
              }
            },
            "tcp-proxy-pump");
    t.setDaemon(true);
    t.start();
  }

  private static void closeQuietly(Socket s) {
    try {
      s.setSoLinger(true, 0); // RST, like a dropped link, not a polite FIN
    } catch (IOException e) {
      // already closed
    }
    try {
      s.close();
    } catch (IOException e) {
      // already closed
    }
  }
}
