/* poll.h - adaptive polling for the relay loop (poll.c); C only, not cdef'd.
 *
 * After a batch of events with work in it, the loop may keep calling
 * epoll_wait with a zero timeout for a short window instead of blocking, so
 * the next notification is picked up without a wakeup. struct svq_poller
 * decides whether a window opens and how long it lasts, and accounts for the
 * time spent spinning.
 *
 * Threads: svq_poller_set() may be called from any thread (atomic stores of
 * the settings); everything else is called by the engine thread only. The
 * counters are stored atomically so svq_stats() can read them lock-free.
 */
#ifndef SVQ_POLL_H
#define SVQ_POLL_H

#include <stdint.h>

struct svq_poller {
    /* Settings: written by any thread, read by the engine thread. */
    int32_t mode;        /* SVQ_POLL_* */
    int32_t budget_ppm;  /* adaptive: spin CPU budget, millionths of a core */
    int64_t max_ns;      /* fixed: the window; adaptive: the longest window */

    /* Engine-thread state: the spin window. */
    int64_t armed_ns;    /* length of the window to open at the next wait, 0 = block */
    int64_t start_ns;    /* when the open window started */
    int64_t window_end;  /* when the open window runs out */

    /* Engine-thread state: the adaptive policy. */
    int32_t policy_mode;     /* the mode this state was built for */
    int64_t last_work_ns;    /* when the last batch with work was seen, 0 = never */
    int64_t gap_ewma_ns;     /* smoothed time between batches with work */
    int64_t tokens_ns;       /* spin time left in the budget */
    int64_t refill_ns;       /* when tokens_ns was last topped up */
    int64_t cooldown_until;  /* no window opens before this */
    uint32_t miss_streak;    /* windows in a row that found nothing */
    uint32_t contended_streak; /* contended verdicts in a row */
    uint32_t sample_windows; /* contention: windows since the last sample */
    int64_t sample_switches; /* involuntary context switches then, 0 = none yet */

    /* Published counters (engine thread writes, svq_stats reads). */
    int32_t spinning;        /* 1 while a window is open */
    uint64_t spin_ns;        /* wall time spent in windows */
    uint64_t hits;           /* windows that found work */
    uint64_t misses;         /* windows that ran out finding nothing */
    uint64_t contended;      /* contended verdicts (adaptive) */
    uint64_t budget_stops;   /* windows skipped or cut for lack of budget (adaptive) */
};

void svq_poller_init(struct svq_poller *p);
void svq_poller_set(struct svq_poller *p, int32_t mode, int64_t max_ns, int32_t budget_ppm);
/* The epoll_wait timeout for the next wait: 0 inside a window, -1 to block. */
int svq_poller_timeout(struct svq_poller *p, int64_t now);
/* After the batch is handled: `work` is how many relay events it held. */
void svq_poller_after(struct svq_poller *p, int work, int64_t now);

#endif
