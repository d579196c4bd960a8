/**
 * Coordination through etcd: pserver registration with provable ownership ({@link
 * org.pserver.cluster.EtcdClient}), the trainers' pserver list ({@link
 * org.pserver.cluster.EtcdLister}) and the choice of the initializing trainer ({@link
 * org.pserver.cluster.EtcdInitSelector}); plus the {@link org.pserver.cluster.KVStore} seam that
 * checkpoint metadata goes through. All keys are in {@link org.pserver.cluster.EtcdKeys}.
 *
 * <h2>Key layout (etcd v3)</h2>
 *
 * <table>
 *   <caption>Keys, their values, writers and leases</caption>
 *   <tr><th>Key</th><th>Value</th><th>Written by</th><th>Lease</th></tr>
 *   <tr><td>{@code /ps_desired}</td><td>pserver count, decimal, e.g. {@code 3}</td>
 *       <td>the first pserver to register, with a create-if-absent transaction; never
 *       overwritten</td><td>none: it outlives every pserver (the seed tied it to the first
 *       pserver's lease)</td></tr>
 *   <tr><td>{@code /ps/<i>}, {@code 0 <= i < /ps_desired}</td><td>{@code host:port} of pserver
 *       {@code i}</td><td>pserver {@code i}, create-if-absent transaction</td><td>that pserver's
 *       one lease (TTL {@code --etcd-ttl}), kept alive by its own keep-alive loop; revoked on
 *       shutdown</td></tr>
 *   <tr><td>{@code /checkpoints/<i>}</td><td>checkpoint metadata (JSON)</td><td>pserver {@code
 *       i}, fenced (below)</td><td>none</td></tr>
 *   <tr><td>{@code /init_ps/lock/<lease-hex>}</td><td>empty</td><td>each trainer queueing for
 *       the init lock; the lowest create revision holds it</td><td>that trainer's session lease
 *       (TTL 5 s by default)</td></tr>
 *   <tr><td>{@code /init_ps/done}</td><td>{@code 1}</td><td>the initializing trainer, guarded by
 *       holding the lock</td><td>none; never deleted</td></tr>
 * </table>
 *
 * <h2>The fencing rule</h2>
 *
 * <p>A pserver owns index {@code i} only while it can <em>prove</em> it: it holds the key {@code
 * /ps/<i>} it created (same mod revision), and its newest acknowledged keep-alive was sent less
 * than the lease TTL (minus a safety margin) ago, so etcd cannot have expired the lease yet.
 * {@code EtcdClient.isOwner()} checks exactly that, against the clock, on every call. Every write a
 * registered pserver makes through the {@code KVStore} is refused locally when ownership is not
 * provable, and is otherwise an etcd transaction that applies only if {@code /ps/<i>} still has
 * the mod revision of the claim. A pserver that lost its claim therefore never overwrites its
 * successor's metadata, even if it was paused or partitioned and has not noticed yet. Watches only
 * make the loss noticed sooner; correctness never depends on them.
 *
 * <p>The converse rule: a pserver that lost its claim takes its index back only if nobody else can
 * have owned it meanwhile with effect: {@code /ps/<i>} must be free <em>and</em> {@code
 * /checkpoints/<i>} must still be what it last saw (checked in the claim transaction). Otherwise a
 * successor acknowledged writes and checkpointed them, and the pserver stops (a takeover) instead
 * of serving its stale in-memory state over them.
 *
 * <h2>Threads and logging</h2>
 *
 * <p>Each client owns a few daemon threads (keep-alive, background re-registration or listing, and
 * one thread for listener callbacks, so callbacks never run on jetcd's threads). Every etcd call is
 * bounded by the dial timeout. Logging goes through SLF4J only.
 */
package org.pserver.cluster;
