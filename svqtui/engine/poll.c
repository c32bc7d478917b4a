/* poll.c - adaptive polling: when the relay loop spins instead of sleeping.
 *
 * A wakeup from a blocking epoll_wait costs tens of microseconds on a small
 * VM, and a notification relayed through the engine pays it once per hop.
 * Spinning (epoll_wait with a zero timeout) after a batch of work saves that
 * wakeup when the next notification comes soon, at the price of the CPU
 * burnt while spinning. The modes:
 *
 *  - off: always block.
 *  - fixed: after every batch with work, spin up to max_ns (a blind spin,
 *    kept as a baseline for benchmarks).
 *  - adaptive: spin only while it pays, and politely: every empty spin
 *    calls sched_yield(), so a thread waiting for this CPU (a peer on the
 *    same CPU, a vCPU, the back-end) runs at once rather than when the
 *    window runs out; with nothing waiting it returns at once. The rules:
 *      * traffic is dense: the smoothed gap between batches with work (an
 *        EWMA, weight 1/8) is at most max_ns; the window is twice that gap,
 *        capped at max_ns;
 *      * a budget: spinning draws its wall time from a token bucket refilled
 *        at budget_ppm millionths of a core (depth: 100 ms worth);
 *      * empty windows back off: from the second empty window in a row, no
 *        window opens for max_ns << (streak - 1) (at most 64x);
 *      * contention: every 16 windows, count the thread's involuntary
 *        context switches (getrusage; a yield that let another thread run
 *        counts as one). 4 or more (a quarter of the windows) means other
 *        threads want this CPU and preempt us or take our yields to get it:
 *        spinning only steals from them (on one CPU, a hit then comes only
 *        after the peer ran in our place), so no window opens for 1 ms,
 *        doubling while it repeats (up to 128 ms). Sampled, not measured per
 *        window, because the syscall costs microseconds on a VM, as much as a
 *        short window; and counted, not timed, because a thread that gets
 *        2/3 of the CPU it wants is still losing the race for it.
 *
 * Only relays count as work: the idle heartbeat and control commands never
 * open a window, so an idle engine only ever blocks.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <sys/resource.h>

#include "relay.h"
#include "poll.h"

#define GAP_EWMA_DIV 8                  /* EWMA weight 1/8 */
#define GAP_CAP_NS 10000000LL           /* one long pause counts as 10 ms */
#define MIN_WINDOW_NS 2000LL            /* shorter windows are not worth opening */
#define BURST_NS 100000000LL            /* token bucket depth: 100 ms of budget */
#define SAMPLE_WINDOWS 16               /* windows per contention verdict */
#define CONTENDED_SWITCHES 4            /* involuntary switches per sample: contended */
#define CONTENDED_COOLDOWN_NS 1000000LL /* first back-off after a contended verdict */
#define MAX_CONTENDED_SHIFT 7
#define MAX_MISS_SHIFT 6

static int64_t involuntary_switches(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) < 0)
        return -1;
    return ru.ru_nivcsw;
}

static void bump(uint64_t *counter, uint64_t by)
{
    __atomic_store_n(counter, *counter + by, __ATOMIC_RELAXED);
}

static int32_t mode_of(struct svq_poller *p)
{
    return __atomic_load_n(&p->mode, __ATOMIC_RELAXED);
}

void svq_poller_init(struct svq_poller *p)
{
    p->gap_ewma_ns = GAP_CAP_NS; /* start sparse: a few quick batches first */
    svq_poller_set(p, SVQ_POLL_OFF, 0, 0);
}

void svq_poller_set(struct svq_poller *p, int32_t mode, int64_t max_ns, int32_t budget_ppm)
{
    __atomic_store_n(&p->max_ns, max_ns, __ATOMIC_RELAXED);
    __atomic_store_n(&p->budget_ppm, budget_ppm, __ATOMIC_RELAXED);
    __atomic_store_n(&p->mode, mode, __ATOMIC_RELAXED);
}

/* Top up the spin budget for the time since the last top-up. */
static void refill(struct svq_poller *p, int64_t now, int64_t budget_ppm)
{
    int64_t elapsed = now - p->refill_ns;
    int64_t cap = budget_ppm * (BURST_NS / 1000000LL);

    if (elapsed > 1000000000LL)
        elapsed = 1000000000LL;
    p->refill_ns = now;
    p->tokens_ns += elapsed * budget_ppm / 1000000LL;
    if (p->tokens_ns > cap)
        p->tokens_ns = cap;
}

/* How long to spin after the batch of work seen at `now` (0 = block). */
static int64_t window_for(struct svq_poller *p, int64_t now)
{
    int32_t mode = mode_of(p);
    int64_t max_ns = __atomic_load_n(&p->max_ns, __ATOMIC_RELAXED);
    int64_t budget = __atomic_load_n(&p->budget_ppm, __ATOMIC_RELAXED);
    int64_t w;

    if (mode == SVQ_POLL_FIXED)
        return max_ns;
    if (mode != SVQ_POLL_ADAPTIVE || now < p->cooldown_until || p->gap_ewma_ns > max_ns)
        return 0;
    w = 2 * p->gap_ewma_ns;
    if (w < MIN_WINDOW_NS)
        w = MIN_WINDOW_NS;
    if (w > max_ns)
        w = max_ns;
    refill(p, now, budget);
    if (p->tokens_ns < w) {
        bump(&p->budget_stops, 1);
        w = p->tokens_ns;
    }
    return w >= MIN_WINDOW_NS ? w : 0;
}

/* Contention, every SAMPLE_WINDOWS windows: was the thread preempted often
 * since the last sample? */
static void sample_contention(struct svq_poller *p, int64_t now)
{
    int64_t switches;

    if (++p->sample_windows < SAMPLE_WINDOWS)
        return;
    p->sample_windows = 0;
    switches = involuntary_switches();
    if (switches < 0)
        return;
    if (p->sample_switches && switches - p->sample_switches >= CONTENDED_SWITCHES) {
        uint32_t shift = p->contended_streak;
        if (shift > MAX_CONTENDED_SHIFT)
            shift = MAX_CONTENDED_SHIFT;
        bump(&p->contended, 1);
        p->contended_streak++;
        p->cooldown_until = now + (CONTENDED_COOLDOWN_NS << shift);
    } else {
        p->contended_streak = 0;
    }
    p->sample_switches = switches;
}

/* End the open window and account for it. `hit`: work came. */
static void close_window(struct svq_poller *p, int64_t now, int hit)
{
    int64_t wall = now - p->start_ns;

    __atomic_store_n(&p->spinning, 0, __ATOMIC_RELAXED);
    bump(&p->spin_ns, (uint64_t)wall);
    if (mode_of(p) == SVQ_POLL_ADAPTIVE) {
        p->tokens_ns -= wall;
        sample_contention(p, now);
    }
    if (hit) {
        bump(&p->hits, 1);
        p->miss_streak = 0;
    } else {
        bump(&p->misses, 1);
        p->miss_streak++;
        if (p->miss_streak > 1 && mode_of(p) == SVQ_POLL_ADAPTIVE) {
            uint32_t shift = p->miss_streak - 1;
            int64_t until;
            if (shift > MAX_MISS_SHIFT)
                shift = MAX_MISS_SHIFT;
            until = now + (__atomic_load_n(&p->max_ns, __ATOMIC_RELAXED) << shift);
            if (until > p->cooldown_until)
                p->cooldown_until = until;
        }
    }
}

int svq_poller_timeout(struct svq_poller *p, int64_t now)
{
    if (p->spinning) {
        if (now < p->window_end) {
            if (mode_of(p) == SVQ_POLL_ADAPTIVE)
                sched_yield(); /* the last poll found nothing: let waiters run */
            return 0;
        }
        close_window(p, now, 0);
    } else if (p->armed_ns > 0) {
        p->start_ns = now;
        p->window_end = now + p->armed_ns;
        p->armed_ns = 0;
        __atomic_store_n(&p->spinning, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return -1;
}

/* A new mode starts with a clean slate: a full budget, no back-off. */
static void reset_policy(struct svq_poller *p, int32_t mode, int64_t now)
{
    p->policy_mode = mode;
    p->tokens_ns = __atomic_load_n(&p->budget_ppm, __ATOMIC_RELAXED) * (BURST_NS / 1000000LL);
    p->refill_ns = now;
    p->cooldown_until = 0;
    p->miss_streak = p->contended_streak = p->sample_windows = 0;
    p->sample_switches = 0;
}

void svq_poller_after(struct svq_poller *p, int work, int64_t now)
{
    int32_t mode = mode_of(p);

    if (!work)
        return; /* a tick, a command or an empty spin: the window goes on */
    if (mode != p->policy_mode)
        reset_policy(p, mode, now);
    if (p->last_work_ns) {
        int64_t gap = now - p->last_work_ns;
        if (gap > GAP_CAP_NS)
            gap = GAP_CAP_NS;
        p->gap_ewma_ns += (gap - p->gap_ewma_ns) / GAP_EWMA_DIV;
    }
    p->last_work_ns = now;
    if (p->spinning)
        close_window(p, now, 1);
    p->armed_ns = window_for(p, now);
}
