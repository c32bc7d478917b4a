/* c_relay.c - the reference relay: the least a C epoll eventfd relay can do.
 *
 * One thread waits on epoll over every link's source; a readable source is
 * drained with one read, its value added to the link's counter, and 1 written
 * to the destination. No masking, no command ring, no timestamps, no seqlock:
 * the benchmark compares svqtui's engine against this floor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench.h"

#define STOP_TAG UINT64_MAX
#define MAX_EVENTS 256

struct crelay_link {
    int src;
    int dst;
    uint64_t notifications;
};

struct crelay {
    int epfd;
    int stopfd;
    uint32_t max_links;
    uint32_t n_links;
    struct crelay_link *links;
};

struct crelay *crelay_create(uint32_t max_links)
{
    struct crelay *r = calloc(1, sizeof(*r));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = STOP_TAG};

    if (!r)
        return NULL;
    r->max_links = max_links;
    r->links = calloc(max_links, sizeof(*r->links));
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    r->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!r->links || r->epfd < 0 || r->stopfd < 0 ||
        epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->stopfd, &ev) < 0) {
        crelay_destroy(r);
        return NULL;
    }
    return r;
}

void crelay_destroy(struct crelay *r)
{
    if (!r)
        return;
    if (r->epfd >= 0)
        close(r->epfd);
    if (r->stopfd >= 0)
        close(r->stopfd);
    free(r->links);
    free(r);
}

int crelay_add(struct crelay *r, int src, int dst)
{
    uint32_t i = r->n_links;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};

    if (i >= r->max_links)
        return -ENOSPC;
    r->links[i].src = src;
    r->links[i].dst = dst;
    if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, src, &ev) < 0)
        return -errno;
    r->n_links = i + 1;
    return (int)i;
}

int crelay_run(struct crelay *r)
{
    struct epoll_event events[MAX_EVENTS];
    const uint64_t one = 1;

    for (;;) {
        int n = epoll_wait(r->epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            struct crelay_link *l;
            uint64_t value;
            if (events[i].data.u64 == STOP_TAG)
                return 0;
            l = &r->links[events[i].data.u64];
            if (read(l->src, &value, sizeof(value)) != sizeof(value))
                continue;
            __atomic_store_n(&l->notifications, l->notifications + value, __ATOMIC_RELAXED);
            (void)!write(l->dst, &one, sizeof(one));
        }
    }
}

void crelay_stop(struct crelay *r)
{
    const uint64_t one = 1;
    (void)!write(r->stopfd, &one, sizeof(one));
}

uint64_t crelay_notifications(struct crelay *r, uint32_t link)
{
    if (link >= r->max_links)
        return 0;
    return __atomic_load_n(&r->links[link].notifications, __ATOMIC_RELAXED);
}
