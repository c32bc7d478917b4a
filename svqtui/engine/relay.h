/* relay.h - the shared-memory layout and command-ring API of svqtui's relay engine.
 *
 * This header is read twice: by the C compiler (relay.c, after <stdint.h>) and
 * by cffi's cdef parser (build_relay.py), so it holds only declarations cffi
 * understands: no #include, no #ifdef, integer #defines only.
 *
 * A queue has two links, KICK (guest -> device) and CALL (device -> guest).
 * Each link relays notifications from a source eventfd to a destination
 * eventfd. The engine thread owns every write to struct svq_queue; Python
 * reads the counters without locks through svq_snapshot(), which uses the
 * per-queue sequence counter (a seqlock) to copy a consistent view.
 */

#define SVQ_LINK_KICK 0
#define SVQ_LINK_CALL 1

#define SVQ_END_SRC 0
#define SVQ_END_DST 1

/* err_op: which operation put a link in its error state (0 = no error). */
#define SVQ_ERR_NONE 0
#define SVQ_ERR_READ 1
#define SVQ_ERR_WRITE 2
#define SVQ_ERR_WATCH 3
#define SVQ_ERR_EOF 4

/* Command-ring operations, applied by the engine thread in submission order. */
#define SVQ_OP_ADD 1
#define SVQ_OP_REMOVE 2
#define SVQ_OP_SET_FD 3
#define SVQ_OP_MASK 4
#define SVQ_OP_INJECT 5
#define SVQ_OP_RESET 6
#define SVQ_OP_STOP 7
#define SVQ_OP_FAULT 8

/* ADD's arg bits */
#define SVQ_ADD_MASKED 1     /* the call link starts masked */
#define SVQ_ADD_QUIET_KICK 2 /* do not signal the kick destination (a takeover) */

/* Faults an operator arms on one link (fault.c), to rehearse a stuck queue
 * or test a guest driver: drop the next N notifications, delay every one by
 * D ms, or duplicate the next N. Counted, never silent; gone with the queue. */
#define SVQ_FAULT_NONE 0
#define SVQ_FAULT_DROP 1
#define SVQ_FAULT_DELAY 2
#define SVQ_FAULT_DUP 3

#define SVQ_RING_SIZE 1024

/* Polling modes of the loop (poll.c): always block, spin while it pays, or
 * spin a fixed window after every batch of work. */
#define SVQ_POLL_OFF 0
#define SVQ_POLL_ADAPTIVE 1
#define SVQ_POLL_FIXED 2

struct svq_link {
    int32_t src;             /* source eventfd, -1 when none */
    int32_t dst;             /* destination eventfd, -1 when none */
    uint64_t notifications;  /* sum of the eventfd values read from src */
    uint64_t reads;          /* successful reads of src */
    uint64_t delivered;      /* writes to dst (relayed, released, signalled) */
    uint64_t held;           /* notifications that arrived while masked */
    uint64_t injected;       /* operator-injected notifications */
    uint64_t signals;        /* "signal once" writes after an fd change */
    uint64_t errors;         /* failed reads/writes/watches */
    int64_t last_ns;         /* CLOCK_MONOTONIC time of the last read, 0 = never */
    uint32_t masked;         /* call link only: deliveries are held */
    uint32_t pending;        /* call link only: a held call awaits unmask */
    int32_t err_op;          /* SVQ_ERR_* of the current error, 0 = healthy */
    int32_t err_errno;       /* errno of the current error */
    int32_t fault;           /* SVQ_FAULT_* armed on this link */
    int32_t fault_left;      /* drop/dup: arrivals still to affect */
    int64_t fault_delay_ns;  /* delay: how long each arrival waits */
    int64_t fault_due_ns;    /* delay: when the waiting notification is due, 0 = none */
    uint64_t dropped;        /* arrivals swallowed by a drop fault (counted, never silent) */
    uint64_t duplicated;     /* extra writes by a dup fault */
    uint64_t delayed;        /* arrivals delivered late by a delay fault */
};

struct svq_queue {
    uint64_t seq;            /* seqlock: odd while the engine updates the queue */
    uint32_t active;
    uint32_t generation;     /* bumped by every ADD, so a reused slot is told apart */
    struct svq_link link[2]; /* indexed by SVQ_LINK_* */
};

struct svq_cmd {
    uint32_t op;             /* SVQ_OP_* */
    uint32_t queue;          /* queue slot */
    int32_t link;            /* SVQ_LINK_* for SET_FD / INJECT */
    int32_t end;             /* SVQ_END_* for SET_FD */
    int32_t fds[4];          /* ADD: kick src, kick dst, call src, call dst; SET_FD: fds[0] */
    int64_t arg;             /* ADD: SVQ_ADD_* bits; MASK: 1/0; REMOVE: hand back; RESET: -1 = all;
                                FAULT: N arrivals (drop, dup) or D ms (delay); fault kind in fds[0] */
};

struct svq_stats {
    int64_t heartbeat_ns;    /* last time the loop woke up (CLOCK_MONOTONIC) */
    uint64_t loops;          /* epoll_wait returns (a spin that found nothing is not one) */
    uint64_t relays;         /* source reads, all queues */
    uint64_t applied;        /* commands applied off the ring */
    uint64_t submitted;      /* commands submitted to the ring */
    int32_t running;         /* 1 while svq_run() loops */
    int32_t stopped;         /* 1 once svq_run() has returned */
    /* Polling (poll.c): settings in force and what spinning cost and found. */
    int32_t poll_mode;       /* SVQ_POLL_* */
    int32_t poll_budget_ppm; /* adaptive: spin CPU budget, millionths of a core */
    int64_t poll_max_ns;     /* fixed: the window; adaptive: the longest window */
    int32_t spinning;        /* 1 while the loop is in a spin window */
    int32_t spare;
    uint64_t spin_ns;        /* wall time spent spinning */
    uint64_t spin_hits;      /* spin windows that found work */
    uint64_t spin_misses;    /* spin windows that ran out finding nothing */
    uint64_t spin_contended; /* adaptive: windows in which the thread was preempted */
    uint64_t spin_budget_stops; /* adaptive: windows skipped or cut by the budget */
};

struct svq_engine;

struct svq_engine *svq_create(uint32_t max_queues);
void svq_destroy(struct svq_engine *e);
int svq_run(struct svq_engine *e);
uint64_t svq_submit(struct svq_engine *e, const struct svq_cmd *cmd);
int svq_wait(struct svq_engine *e, uint64_t seq, int timeout_ms);
uint32_t svq_snapshot(struct svq_engine *e, struct svq_queue *out, uint32_t first, uint32_t count);
void svq_stats(struct svq_engine *e, struct svq_stats *out);
uint32_t svq_max_queues(struct svq_engine *e);
/* Change the polling mode; any thread, takes effect at the next batch of work. */
void svq_set_polling(struct svq_engine *e, int32_t mode, int64_t max_ns, int32_t budget_ppm);
