/* fault.h - operator-armed faults on one link (fault.c); C only, not cdef'd.
 *
 * The engine thread alone calls these, from relay() (an arrival) and from
 * apply() (SVQ_OP_FAULT, REMOVE). A fault changes what an arrival does; the
 * caller still does the delivering, so masking (rule 2) applies as ever.
 */
#ifndef SVQ_FAULT_H
#define SVQ_FAULT_H

#include <stdint.h>

struct svq_link;

/* What relay() does with one arrival on a link. */
enum svq_fault_action {
    SVQ_ARRIVAL_DELIVER = 0, /* no fault: deliver (or hold while masked) */
    SVQ_ARRIVAL_SWALLOW,     /* dropped (counted in `dropped`) */
    SVQ_ARRIVAL_DEFER,       /* waits until fault_due_ns (delay) */
    SVQ_ARRIVAL_TWICE,       /* deliver, then write once more (dup) */
};

/* Arm (or with SVQ_FAULT_NONE clear) a fault; returns 1 when a deferred
 * notification must be delivered now (clearing must not lose it). */
int svq_fault_arm(struct svq_link *l, int kind, int64_t amount, int64_t now);

/* Decide an arrival's fate and count it. */
enum svq_fault_action svq_fault_arrival(struct svq_link *l, int64_t now);

/* A deferred notification is due: returns 1 (and counts it) when it is. */
int svq_fault_due(struct svq_link *l, int64_t now);

#endif
