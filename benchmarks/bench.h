/* bench.h - declarations of the benchmark's C helper module (_svq_bench).
 *
 * Read twice, like svqtui/engine/relay.h: by the C compiler (after
 * <stdint.h>) and by cffi's cdef parser, so it holds only plain declarations.
 *
 * c_relay.c owns the reference relay (crelay_*); c_driver.c owns the load
 * drivers (bench_*) that every implementation is measured with.
 */

/* ---- c_relay.c: the minimal plain-C epoll relay (the reference) ---- */

struct crelay;

struct crelay *crelay_create(uint32_t max_links);
void crelay_destroy(struct crelay *r);
/* Relay src -> dst; returns the link index, or -errno. Safe while running. */
int crelay_add(struct crelay *r, int src, int dst);
/* The relay thread's body: returns 0 after crelay_stop(), -errno on failure. */
int crelay_run(struct crelay *r);
void crelay_stop(struct crelay *r);
/* Sum of the eventfd values read from one link's source. */
uint64_t crelay_notifications(struct crelay *r, uint32_t link);

/* ---- c_driver.c: the load drivers (never hold the GIL) ---- */

/* Round trips: write 1 to `a`, block in poll() until `c` is readable, read it.
 * Up to `n` samples or `max_s` seconds; the first `warmup` are not recorded.
 * Returns 0 or -errno; *samples = recorded samples, *writes = writes to `a`. */
int bench_rtt(int a, int c, int n, int warmup, double max_s, int timeout_ms,
              double *out_us, int *samples, uint64_t *writes);

/* Closed-loop rounds over n queues: write 1 to every a[i], then epoll until
 * every c[i] was read; repeat for `seconds`. Returns 0 or -errno;
 * *rounds = completed rounds, *writes = writes to a[], *elapsed_s = time. */
int bench_rounds(const int *a, const int *c, int n, double seconds, int timeout_ms,
                 uint64_t *rounds, uint64_t *writes, double *elapsed_s);

/* Burst: write 1 to every a[i], k times over, without waiting. Returns 0 or
 * -errno; *writes = successful writes. */
int bench_burst(const int *a, int n, int k, uint64_t *writes);

/* Read every fd once, nonblocking; returns the sum of the values read. */
uint64_t bench_drain(const int *fds, int n);
