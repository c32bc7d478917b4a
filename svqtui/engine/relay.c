/* relay.c - svqtui's eventfd relay engine: the hot loop and its command ring.
 *
 * One engine thread calls svq_run(), which waits on epoll over every link's
 * source eventfd plus the command ring's wakeup eventfd. A readable source is drained with
 * one nonblocking read and, unless the link is masked, relayed with one write
 * of 1 to the destination. Python never reads or writes a relayed eventfd:
 * it submits commands (svq_submit) and reads counters (svq_snapshot).
 *
 * Semantics (docs/design.md#relay-rules):
 *  1. No lost notification: any change of a link's source or destination
 *     signals the (new) destination once; spurious signals are harmless.
 *  2. Masking: a masked call link latches arrivals as pending; unmask
 *     delivers a pending call exactly once.
 *  3. Serialised commands: every change is a command applied by the engine
 *     thread itself, in submission order, between event batches. There is no
 *     second writer, so "unmask" racing "switch destination" cannot leave a
 *     link pointing anywhere but at the last destination asked for.
 *  4. REMOVE with hand-back signals the front-end's fds once, so a
 *     notification the engine swallowed during the switch is not lost.
 *  5. A bad fd puts one link in an error state; the loop goes on.
 *
 * Faults an operator arms on a link (drop, delay, duplicate: fault.c) change
 * what an arrival does, never what masking does; a delayed notification
 * waits on the delay timerfd.
 *
 * Between batches the loop either blocks in epoll_wait or, when poll.c says
 * spinning pays, polls with a zero timeout for a short window. That changes
 * only when an event is noticed, never what is done with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "relay.h"
#include "fault.h"
#include "poll.h"

#define RING_TAG UINT64_MAX
#define TICK_TAG (UINT64_MAX - 1)
#define DELAY_TAG (UINT64_MAX - 2)
#define MAX_EVENTS 256
#define IDLE_WAKEUP_MS 100 /* heartbeat period when nothing happens */

struct svq_engine {
    int epfd;
    int ringfd;
    int tickfd; /* periodic timerfd: the idle heartbeat, so epoll_wait needs no timeout */
    int delayfd; /* one-shot timerfd: the earliest notification a delay fault holds */
    int64_t delay_armed_ns; /* when delayfd fires, 0 = disarmed */
    uint32_t max_queues;
    struct svq_queue *queues;

    /* Command ring: producers (any thread) append under `lock`; the engine
     * thread takes commands out in order and applies them without the lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct svq_cmd ring[SVQ_RING_SIZE];
    uint64_t submitted; /* seq of the last submitted command */
    uint64_t taken;     /* seq of the last command copied out by the engine */
    uint64_t applied;   /* seq of the last command applied */
    int stop_requested;

    /* Statistics, written by the engine thread only. */
    int64_t heartbeat_ns;
    uint64_t loops;
    uint64_t relays;
    int32_t running;
    int32_t stopped;

    struct svq_poller poll; /* spin or block between batches (poll.c) */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Seqlock writer side: readers retry while seq is odd or has moved. */
static void write_begin(struct svq_queue *q)
{
    __atomic_store_n(&q->seq, q->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static void write_end(struct svq_queue *q)
{
    __atomic_store_n(&q->seq, q->seq + 1, __ATOMIC_RELEASE);
}

static void set_error(struct svq_link *l, int op, int err)
{
    l->errors++;
    l->err_op = op;
    l->err_errno = err;
}

static void watch(struct svq_engine *e, uint32_t qi, int li)
{
    struct svq_link *l = &e->queues[qi].link[li];
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)qi << 1) | (uint64_t)li};
    if (l->src < 0)
        return;
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, l->src, &ev) < 0)
        set_error(l, SVQ_ERR_WATCH, errno);
}

static void unwatch(struct svq_engine *e, struct svq_link *l)
{
    /* EBADF/ENOENT are fine: the fd was never watched or already gone. */
    if (l->src >= 0)
        epoll_ctl(e->epfd, EPOLL_CTL_DEL, l->src, NULL);
}

/* Write 1 to the destination. An EAGAIN means the counter is saturated, so
 * the destination is already signalled: that counts as delivered. */
static void write_dst(struct svq_link *l)
{
    uint64_t one = 1;
    if (l->dst < 0)
        return;
    if (write(l->dst, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN)
        l->delivered++;
    else
        set_error(l, SVQ_ERR_WRITE, errno);
}

/* Deliver one notification, or latch it as pending while masked. */
static void notify(struct svq_link *l)
{
    if (l->masked) {
        l->held++;
        l->pending = 1;
    } else {
        write_dst(l);
    }
}

/* Make delayfd fire by `due` (absolute CLOCK_MONOTONIC ns). */
static void arm_delay(struct svq_engine *e, int64_t due)
{
    struct itimerspec at = {.it_value = {.tv_sec = due / 1000000000LL,
                                         .tv_nsec = due % 1000000000LL}};
    if (e->delay_armed_ns && e->delay_armed_ns <= due)
        return;
    if (timerfd_settime(e->delayfd, TFD_TIMER_ABSTIME, &at, NULL) == 0)
        e->delay_armed_ns = due;
}

/* delayfd fired: deliver every delayed notification now due, re-arm for the
 * next. Scans the queues, but only when a delay fault has fired. */
static void deliver_delayed(struct svq_engine *e, int64_t now)
{
    uint64_t expirations;
    int64_t next = 0;

    (void)!read(e->delayfd, &expirations, sizeof(expirations));
    e->delay_armed_ns = 0;
    for (uint32_t qi = 0; qi < e->max_queues; qi++) {
        struct svq_queue *q = &e->queues[qi];
        if (!q->active)
            continue;
        for (int li = 0; li < 2; li++) {
            struct svq_link *l = &q->link[li];
            if (!l->fault_due_ns)
                continue;
            if (l->fault_due_ns <= now) {
                write_begin(q);
                if (svq_fault_due(l, now))
                    notify(l);
                write_end(q);
            } else if (!next || l->fault_due_ns < next) {
                next = l->fault_due_ns;
            }
        }
    }
    if (next)
        arm_delay(e, next);
}

/* One arrival on a link with a fault armed (fault.c decides, we deliver). */
static void arrive_with_fault(struct svq_engine *e, struct svq_link *l, int64_t now)
{
    switch (svq_fault_arrival(l, now)) {
    case SVQ_ARRIVAL_SWALLOW:
        break;
    case SVQ_ARRIVAL_DEFER:
        arm_delay(e, l->fault_due_ns);
        break;
    case SVQ_ARRIVAL_TWICE:
        notify(l);
        if (!l->masked)
            write_dst(l);
        break;
    default:
        notify(l);
    }
}

/* The hot path: drain one readable source and relay it. */
static void relay(struct svq_engine *e, uint32_t qi, int li, int64_t now)
{
    struct svq_queue *q = &e->queues[qi];
    struct svq_link *l = &q->link[li];
    uint64_t value;
    ssize_t r = read(l->src, &value, sizeof(value));

    if (r < 0 && errno == EAGAIN)
        return;
    write_begin(q);
    if (r == sizeof(value)) {
        l->notifications += value;
        l->reads++;
        l->last_ns = now;
        e->relays++;
        if (l->fault)
            arrive_with_fault(e, l, now);
        else
            notify(l);
    } else {
        /* A short read or EOF means the source is not an eventfd. */
        set_error(l, r == 0 ? SVQ_ERR_EOF : SVQ_ERR_READ, r < 0 ? errno : EIO);
        unwatch(e, l);
    }
    write_end(q);
}

static void reset_counters(struct svq_link *l)
{
    l->notifications = l->reads = l->delivered = l->held = 0;
    l->injected = l->signals = l->errors = 0;
    l->dropped = l->duplicated = l->delayed = 0;
}

static void apply(struct svq_engine *e, const struct svq_cmd *c)
{
    struct svq_queue *q;
    struct svq_link *l;

    if (c->op == SVQ_OP_STOP) {
        e->stop_requested = 1;
        return;
    }
    if (c->op == SVQ_OP_RESET && c->arg < 0) {
        for (uint32_t i = 0; i < e->max_queues; i++) {
            if (!e->queues[i].active)
                continue;
            write_begin(&e->queues[i]);
            reset_counters(&e->queues[i].link[0]);
            reset_counters(&e->queues[i].link[1]);
            write_end(&e->queues[i]);
        }
        return;
    }
    if (c->queue >= e->max_queues)
        return;
    q = &e->queues[c->queue];
    l = &q->link[c->link & 1];
    write_begin(q);
    switch (c->op) {
    case SVQ_OP_ADD:
        if (q->active) { /* re-ADD replaces: stop watching the old sources */
            unwatch(e, &q->link[0]);
            unwatch(e, &q->link[1]);
        }
        memset(q->link, 0, sizeof(q->link));
        q->active = 1;
        q->generation++;
        for (int li = 0; li < 2; li++) {
            q->link[li].src = c->fds[2 * li];
            q->link[li].dst = c->fds[2 * li + 1];
            watch(e, c->queue, li);
        }
        q->link[SVQ_LINK_CALL].masked = (c->arg & SVQ_ADD_MASKED) ? 1 : 0;
        /* New path: signal both destinations once (rule 1). A takeover's
         * ADD skips the kick destination: the back-end keeps the same
         * eng_kick and a kick that raced the hand-over waits in the
         * front-end's kick eventfd, which this ADD watches. */
        for (int li = 0; li < 2; li++) {
            if (li == SVQ_LINK_KICK && (c->arg & SVQ_ADD_QUIET_KICK))
                continue;
            q->link[li].signals++;
            notify(&q->link[li]);
            q->link[li].held = 0; /* a signal is not a guest's call */
        }
        break;
    case SVQ_OP_REMOVE:
        if (!q->active)
            break;
        for (int li = 0; li < 2; li++) /* a delayed notification is not lost */
            if (svq_fault_arm(&q->link[li], SVQ_FAULT_NONE, 0, 0))
                notify(&q->link[li]);
        unwatch(e, &q->link[0]);
        unwatch(e, &q->link[1]);
        if (c->arg) {
            /* Hand back: the back-end now polls the front-end's kick fd
             * itself and calls the front-end's call fd itself. Anything the
             * engine took in flight is re-signalled there once (rule 4). */
            uint64_t one = 1;
            if (q->link[SVQ_LINK_KICK].src >= 0)
                (void)!write(q->link[SVQ_LINK_KICK].src, &one, sizeof(one));
            write_dst(&q->link[SVQ_LINK_CALL]);
        }
        q->active = 0;
        break;
    case SVQ_OP_SET_FD:
        if (!q->active)
            break;
        /* The error goes with the failing fd, but only if that is the one
         * replaced: a dead source stays unwatched when the destination
         * changes, so its error must stay visible. */
        if (l->err_op && (l->err_op == SVQ_ERR_WRITE) == (c->end == SVQ_END_DST))
            l->err_op = l->err_errno = 0;
        if (c->end == SVQ_END_SRC) {
            unwatch(e, l);
            l->src = c->fds[0];
            watch(e, c->queue, c->link & 1);
        } else {
            l->dst = c->fds[0];
        }
        /* New path: signal the destination once (rule 1). */
        l->signals++;
        if (l->masked)
            l->pending = 1;
        else
            write_dst(l);
        break;
    case SVQ_OP_MASK:
        if (!q->active)
            break;
        l = &q->link[SVQ_LINK_CALL];
        l->masked = c->arg ? 1 : 0;
        if (!l->masked && l->pending) {
            l->pending = 0;
            write_dst(l); /* the held call, exactly once (rule 2) */
        }
        break;
    case SVQ_OP_INJECT:
        if (!q->active)
            break;
        l->injected++;
        if (l->masked)
            l->pending = 1;
        else
            write_dst(l);
        break;
    case SVQ_OP_RESET:
        reset_counters(&q->link[0]);
        reset_counters(&q->link[1]);
        break;
    case SVQ_OP_FAULT:
        if (!q->active)
            break;
        if (svq_fault_arm(l, c->fds[0], c->arg, 0))
            notify(l); /* the notification a delay held goes out now */
        break;
    }
    write_end(q);
}

/* Take every submitted command out of the ring, apply them in order, then
 * publish how far we got and wake the submitters waiting in svq_wait(). */
static void apply_pending_commands(struct svq_engine *e)
{
    struct svq_cmd batch[SVQ_RING_SIZE];
    uint64_t first, last;

    pthread_mutex_lock(&e->lock);
    first = e->taken + 1;
    last = e->submitted;
    for (uint64_t s = first; s <= last; s++)
        batch[s - first] = e->ring[(s - 1) % SVQ_RING_SIZE];
    e->taken = last;
    pthread_cond_broadcast(&e->cond); /* ring space for blocked submitters */
    pthread_mutex_unlock(&e->lock);

    for (uint64_t s = first; s <= last; s++)
        apply(e, &batch[s - first]);

    pthread_mutex_lock(&e->lock);
    e->applied = last;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

struct svq_engine *svq_create(uint32_t max_queues)
{
    struct svq_engine *e = calloc(1, sizeof(*e));
    pthread_condattr_t attr;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = RING_TAG};
    struct epoll_event tick_ev = {.events = EPOLLIN, .data.u64 = TICK_TAG};
    struct epoll_event delay_ev = {.events = EPOLLIN, .data.u64 = DELAY_TAG};
    const struct timespec period = {.tv_sec = 0, .tv_nsec = IDLE_WAKEUP_MS * 1000000L};
    const struct itimerspec tick = {.it_interval = period, .it_value = period};

    if (!e)
        return NULL;
    e->max_queues = max_queues;
    e->queues = calloc(max_queues, sizeof(*e->queues));
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->ringfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    e->delayfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!e->queues || e->epfd < 0 || e->ringfd < 0 || e->tickfd < 0 || e->delayfd < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->ringfd, &ev) < 0 ||
        timerfd_settime(e->tickfd, 0, &tick, NULL) < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->tickfd, &tick_ev) < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->delayfd, &delay_ev) < 0) {
        svq_destroy(e);
        return NULL;
    }
    svq_poller_init(&e->poll);
    pthread_mutex_init(&e->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cond, &attr);
    pthread_condattr_destroy(&attr);
    return e;
}

void svq_destroy(struct svq_engine *e)
{
    if (!e)
        return;
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->ringfd >= 0)
        close(e->ringfd);
    if (e->tickfd >= 0)
        close(e->tickfd);
    if (e->delayfd >= 0)
        close(e->delayfd);
    free(e->queues);
    free(e);
}

/* The engine thread's body. Returns 0 after a STOP command, -errno if epoll
 * itself fails. Called through cffi, which releases the GIL for its whole run. */
int svq_run(struct svq_engine *e)
{
    struct epoll_event events[MAX_EVENTS];
    int rc = 0;

    /* Beat once before announcing the loop, so health() is alive as soon
     * as start() returns rather than after the first idle wakeup. */
    __atomic_store_n(&e->heartbeat_ns, now_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&e->running, 1, __ATOMIC_RELEASE);
    while (!e->stop_requested) {
        int timeout = svq_poller_timeout(&e->poll, now_ns());
        int n = epoll_wait(e->epfd, events, MAX_EVENTS, timeout);
        int64_t now = now_ns();
        int ring_woken = 0, work = 0;

        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == RING_TAG) {
                ring_woken = 1;
            } else if (tag == TICK_TAG) {
                uint64_t expirations;
                (void)!read(e->tickfd, &expirations, sizeof(expirations));
            } else if (tag == DELAY_TAG) {
                deliver_delayed(e, now);
            } else {
                relay(e, (uint32_t)(tag >> 1), (int)(tag & 1), now);
                work++;
            }
        }
        if (ring_woken) {
            uint64_t drained;
            (void)!read(e->ringfd, &drained, sizeof(drained));
            apply_pending_commands(e);
        }
        svq_poller_after(&e->poll, work, now);
        __atomic_store_n(&e->heartbeat_ns, now, __ATOMIC_RELAXED);
        if (n != 0) /* an empty spin is not a loop: loops stay comparable */
            __atomic_store_n(&e->loops, e->loops + 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_lock(&e->lock);
    e->running = 0;
    e->stopped = 1;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* Queue one command for the engine thread; returns its sequence number, or 0
 * when the engine has stopped and will never apply it. Blocks while the ring
 * is full. */
uint64_t svq_submit(struct svq_engine *e, const struct svq_cmd *cmd)
{
    uint64_t seq, one = 1;

    pthread_mutex_lock(&e->lock);
    while (!e->stopped && e->submitted - e->taken >= SVQ_RING_SIZE)
        pthread_cond_wait(&e->cond, &e->lock);
    if (e->stopped) {
        pthread_mutex_unlock(&e->lock);
        return 0;
    }
    seq = ++e->submitted;
    e->ring[(seq - 1) % SVQ_RING_SIZE] = *cmd;
    pthread_mutex_unlock(&e->lock);
    (void)!write(e->ringfd, &one, sizeof(one));
    return seq;
}

/* Wait until command `seq` is applied: 0 applied, 1 timed out, 2 the engine
 * stopped first. */
int svq_wait(struct svq_engine *e, uint64_t seq, int timeout_ms)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->lock);
    while (e->applied < seq) {
        if (e->stopped) {
            rc = 2;
            break;
        }
        if (pthread_cond_timedwait(&e->cond, &e->lock, &deadline) == ETIMEDOUT) {
            rc = e->applied < seq ? 1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* Copy queue slots [first, first + count) to the same indices of `out`, each
 * consistent in itself (seqlock reader). Lock-free: the engine thread never
 * waits for a reader. Returns how many slots were copied. */
uint32_t svq_snapshot(struct svq_engine *e, struct svq_queue *out, uint32_t first, uint32_t count)
{
    if (first >= e->max_queues)
        return 0;
    if (count > e->max_queues - first)
        count = e->max_queues - first;
    for (uint32_t i = first; i < first + count; i++) {
        struct svq_queue *q = &e->queues[i];
        uint64_t before, after;
        do {
            before = __atomic_load_n(&q->seq, __ATOMIC_ACQUIRE);
            if (before & 1)
                continue;
            memcpy(&out[i], q, sizeof(*q));
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            after = __atomic_load_n(&q->seq, __ATOMIC_RELAXED);
        } while ((before & 1) || before != after);
    }
    return count;
}

void svq_stats(struct svq_engine *e, struct svq_stats *out)
{
    out->heartbeat_ns = __atomic_load_n(&e->heartbeat_ns, __ATOMIC_RELAXED);
    out->loops = __atomic_load_n(&e->loops, __ATOMIC_RELAXED);
    out->relays = __atomic_load_n(&e->relays, __ATOMIC_RELAXED);
    out->running = __atomic_load_n(&e->running, __ATOMIC_ACQUIRE);
    out->poll_mode = __atomic_load_n(&e->poll.mode, __ATOMIC_RELAXED);
    out->poll_budget_ppm = __atomic_load_n(&e->poll.budget_ppm, __ATOMIC_RELAXED);
    out->poll_max_ns = __atomic_load_n(&e->poll.max_ns, __ATOMIC_RELAXED);
    out->spinning = __atomic_load_n(&e->poll.spinning, __ATOMIC_RELAXED);
    out->spin_ns = __atomic_load_n(&e->poll.spin_ns, __ATOMIC_RELAXED);
    out->spin_hits = __atomic_load_n(&e->poll.hits, __ATOMIC_RELAXED);
    out->spin_misses = __atomic_load_n(&e->poll.misses, __ATOMIC_RELAXED);
    out->spin_contended = __atomic_load_n(&e->poll.contended, __ATOMIC_RELAXED);
    out->spin_budget_stops = __atomic_load_n(&e->poll.budget_stops, __ATOMIC_RELAXED);
    pthread_mutex_lock(&e->lock);
    out->applied = e->applied;
    out->submitted = e->submitted;
    out->stopped = e->stopped;
    pthread_mutex_unlock(&e->lock);
}

uint32_t svq_max_queues(struct svq_engine *e)
{
    return e->max_queues;
}

void svq_set_polling(struct svq_engine *e, int32_t mode, int64_t max_ns, int32_t budget_ppm)
{
    svq_poller_set(&e->poll, mode, max_ns, budget_ppm);
}
