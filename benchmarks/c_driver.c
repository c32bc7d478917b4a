/* c_driver.c - the load drivers: the "guest" side of every measurement.
 *
 * Every implementation is driven by the same C code, called through cffi with
 * the GIL released, so driver overhead is identical for all of them and never
 * competes with a Python relay (or the busy thread) for the GIL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_EVENTS 256

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int signal_fd(int fd)
{
    const uint64_t one = 1;
    return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

/* Block until fd is readable, then read it: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t value;
    int n;

    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ETIMEDOUT;
    return read(fd, &value, sizeof(value)) == sizeof(value) ? 0 : -errno;
}

int bench_rtt(int a, int c, int n, int warmup, double max_s, int timeout_ms,
              double *out_us, int *samples, uint64_t *writes)
{
    const int64_t deadline = now_ns() + (int64_t)(max_s * 1e9);
    int rc = 0;

    *samples = 0;
    *writes = 0;
    for (int i = 0; i < warmup + n; i++) {
        int64_t t0 = now_ns(), t1;
        if ((rc = signal_fd(a)) < 0)
            break;
        (*writes)++;
        if ((rc = wait_fd(c, timeout_ms)) < 0)
            break;
        t1 = now_ns();
        if (i >= warmup)
            out_us[(*samples)++] = (double)(t1 - t0) / 1e3;
        if (t1 > deadline && *samples > 0)
            break;
    }
    return rc;
}

/* Wait until every fd of one round was read once. */
static int wait_round(int epfd, const int *c, int n, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int remaining = n;

    while (remaining > 0) {
        int got = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -ETIMEDOUT;
        for (int i = 0; i < got; i++) {
            uint64_t value;
            if (read(c[events[i].data.u32], &value, sizeof(value)) == sizeof(value))
                remaining--;
        }
    }
    return 0;
}

static int watch_all(const int *c, int n)
{
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c[i], &ev) < 0) {
            int err = -errno;
            close(epfd);
            return err;
        }
    }
    return epfd;
}

int bench_rounds(const int *a, const int *c, int n, double seconds, int timeout_ms,
                 uint64_t *rounds, uint64_t *writes, double *elapsed_s)
{
    int epfd = watch_all(c, n);
    int64_t start, deadline;
    int rc = 0;

    *rounds = 0;
    *writes = 0;
    *elapsed_s = 0;
    if (epfd < 0)
        return epfd;
    start = now_ns();
    deadline = start + (int64_t)(seconds * 1e9);
    do {
        for (int i = 0; i < n && rc == 0; i++)
            if ((rc = signal_fd(a[i])) == 0)
                (*writes)++;
        if (rc < 0 || (rc = wait_round(epfd, c, n, timeout_ms)) < 0)
            break;
        (*rounds)++;
    } while (now_ns() < deadline);
    *elapsed_s = (double)(now_ns() - start) / 1e9;
    close(epfd);
    return rc;
}

int bench_burst(const int *a, int n, int k, uint64_t *writes)
{
    *writes = 0;
    for (int j = 0; j < k; j++) {
        for (int i = 0; i < n; i++) {
            int rc = signal_fd(a[i]);
            if (rc < 0)
                return rc;
            (*writes)++;
        }
    }
    return 0;
}

uint64_t bench_drain(const int *fds, int n)
{
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t value;
        if (read(fds[i], &value, sizeof(value)) == sizeof(value))
            total += value;
    }
    return total;
}
