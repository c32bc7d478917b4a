/* fault.c - operator-armed faults on one link of the relay engine.
 *
 * Semantics (docs/design.md#relay-rules, "Faults"):
 *  - drop N: the next N arrivals on the link are swallowed: counted in
 *    `dropped` (and in `notifications`, as ever), never delivered; the fault
 *    disarms itself after N.
 *  - dup N: the next N arrivals are delivered and then written once more
 *    (`duplicated`); an eventfd reader that has not read in between sees the
 *    two as one, as it would two real ones.
 *  - delay D ms: every arrival waits D ms before it is delivered; arrivals
 *    while one waits join it (an eventfd counter would have coalesced them
 *    too). Stays armed until cleared. Clearing, re-arming or removing the
 *    queue delivers a waiting notification at once: a fault never loses one
 *    silently.
 * A delivery after a fault still goes through masking (rule 2). Faults live
 * in the link, so shadow off (the queue leaves the engine) and process exit
 * disarm them.
 */
#include <stdint.h>

#include "relay.h"
#include "fault.h"

int svq_fault_arm(struct svq_link *l, int kind, int64_t amount, int64_t now)
{
    int flush = l->fault_due_ns != 0; /* a waiting notification goes out now */

    (void)now;
    l->fault = SVQ_FAULT_NONE;
    l->fault_left = 0;
    l->fault_delay_ns = 0;
    l->fault_due_ns = 0;
    if (amount <= 0)
        kind = SVQ_FAULT_NONE;
    switch (kind) {
    case SVQ_FAULT_DROP:
    case SVQ_FAULT_DUP:
        l->fault = kind;
        l->fault_left = amount > INT32_MAX ? INT32_MAX : (int32_t)amount;
        break;
    case SVQ_FAULT_DELAY:
        l->fault = kind;
        l->fault_delay_ns = amount * 1000000LL;
        break;
    default:
        break;
    }
    return flush;
}

enum svq_fault_action svq_fault_arrival(struct svq_link *l, int64_t now)
{
    switch (l->fault) {
    case SVQ_FAULT_DROP:
        l->dropped++;
        if (--l->fault_left <= 0)
            l->fault = SVQ_FAULT_NONE;
        return SVQ_ARRIVAL_SWALLOW;
    case SVQ_FAULT_DUP:
        l->duplicated++;
        if (--l->fault_left <= 0)
            l->fault = SVQ_FAULT_NONE;
        return SVQ_ARRIVAL_TWICE;
    case SVQ_FAULT_DELAY:
        if (l->fault_due_ns == 0)
            l->fault_due_ns = now + l->fault_delay_ns;
        return SVQ_ARRIVAL_DEFER;
    default:
        return SVQ_ARRIVAL_DELIVER;
    }
}

int svq_fault_due(struct svq_link *l, int64_t now)
{
    if (l->fault_due_ns == 0 || l->fault_due_ns > now)
        return 0;
    l->fault_due_ns = 0;
    l->delayed++;
    return 1;
}
