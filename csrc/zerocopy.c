/*
 * zerocopy's C shims: one static function per system call, no Python C-API,
 * no policy; the one loop (zc_relay_step) repeats two splices and reports
 * why it stopped, deciding nothing.  Each returns the kernel's result, or -1 with errno set
 * (cffi reads it as ffi.errno right after the call).  Retrying on EINTR is the
 * Python layer's job, so that Python signal handlers get to run in between.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/errqueue.h>

#define ZC_ABI_VERSION 5

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

/* Room for one IPv4/IPv6 extended error with its offender address. */
#define ZC_COMPLETION_CONTROL_SIZE \
    (CMSG_SPACE(sizeof(struct sock_extended_err) + 64))

/* Why zc_relay_step returned (zerocopy._constants repeats these values). */
#define ZC_STEP_ERROR -1     /* a splice failed: errno in state->err */
#define ZC_STEP_SRC_EMPTY 1  /* src would block, the pipe is empty */
#define ZC_STEP_SRC_END 2    /* src returned 0 (end of stream or an urgent mark), pipe empty */
#define ZC_STEP_DST_FULL 3   /* dst would block; state->in_pipe bytes wait in the pipe */
#define ZC_STEP_SPENT 4      /* the whole byte budget was delivered in this call */
#define ZC_STEP_DST_ZERO 5   /* dst took 0 bytes (never from a stream socket) */

struct zc_relay_state {
    int64_t in_pipe;
    int64_t delivered;
    int32_t err;
};

#ifndef SIOCATMARK
#define SIOCATMARK 0x8905
#endif

/* What a hub direction waits for before zc_hub_run steps it. */
#define ZC_WANT_NONE 0 /* nothing: Python holds it; errors on its sockets are reported */
#define ZC_WANT_SRC 1  /* src readable */
#define ZC_WANT_DST 2  /* dst writable */
#define ZC_WANT_RUN 3  /* nothing: step it in the next round */

/* zc_hub_dir.flags */
#define ZC_HUB_STEP 1 /* zc_hub_run steps it; without, it reports the wait as ZC_HUB_READY */

/* zc_hub_dir.ready: readiness seen by epoll and not yet used up by a step. */
#define ZC_READY_SRC 1
#define ZC_READY_DST 2
#define ZC_READY_REPORTED 4 /* internal: reported in this call already */
#define ZC_READY_URG 8      /* the source showed urgent data (EPOLLPRI): look for the mark */

/* Why zc_hub_run reports a direction (zerocopy._constants repeats these values). */
#define ZC_HUB_READY 1     /* a direction without ZC_HUB_STEP: what it waited for came */
#define ZC_HUB_STOPPED 2   /* a step stopped for a decision: ZC_STEP_* in status */
#define ZC_HUB_EVENT 3     /* an error or hang-up on a socket of a ZC_WANT_NONE direction */
#define ZC_HUB_NEED_PIPE 4 /* due for a step, and no pipe */
#define ZC_HUB_WOKEN 5     /* the wake-up descriptor (index -1) */

struct zc_hub_dir {
    int32_t src;
    int32_t dst;
    int32_t pipe_r;
    int32_t pipe_w;
    int64_t pipe_size;
    struct zc_relay_state *state;
    int32_t want;
    int32_t flags;
    int32_t ready;
    int32_t status;
};

struct zc_hub_report {
    int32_t index;
    int32_t reason;
};

struct zc_completion {
    uint32_t first;
    uint32_t last;
    uint32_t code;
    uint32_t origin;
    int32_t err;
};

static int zc_abi_version(void)
{
    return ZC_ABI_VERSION;
}

/* The cdef passes offsets as int64_t *: refuse to build where off_t is
 * narrower (32-bit without _FILE_OFFSET_BITS=64) rather than corrupt them. */
_Static_assert(sizeof(off_t) == sizeof(int64_t), "off_t must be 64-bit");
_Static_assert(sizeof(loff_t) == sizeof(int64_t), "loff_t must be 64-bit");

static ssize_t zc_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count)
{
    return sendfile(out_fd, in_fd, (off_t *)offset, count);
}

static ssize_t zc_splice(int fd_in, int64_t *off_in, int fd_out,
                         int64_t *off_out, size_t len, unsigned int flags)
{
    return splice(fd_in, (loff_t *)off_in, fd_out, (loff_t *)off_out, len, flags);
}

static ssize_t zc_tee(int fd_in, int fd_out, size_t len, unsigned int flags)
{
    return tee(fd_in, fd_out, len, flags);
}

static ssize_t zc_vmsplice(int fd, const struct iovec *iov, size_t nr_segs,
                           unsigned int flags)
{
    return vmsplice(fd, iov, nr_segs, flags);
}

static ssize_t zc_copy_file_range(int fd_in, int64_t *off_in, int fd_out,
                                  int64_t *off_out, size_t len,
                                  unsigned int flags)
{
    return copy_file_range(fd_in, (loff_t *)off_in, fd_out, (loff_t *)off_out,
                           len, flags);
}

static ssize_t zc_send(int sockfd, const void *buf, size_t len, int flags)
{
    return send(sockfd, buf, len, flags);
}

/*
 * One step of one relay direction: src -> pipe -> dst with non-blocking
 * splices, until something would block, src ends, a splice fails, or
 * `budget` bytes reached dst in this call (never more: no splice asks for
 * more than is left of it).  It reads from src only into an
 * empty pipe, so EAGAIN from src always means "src is empty" and EAGAIN
 * towards dst always means "dst is full".  The counts live in the caller's
 * `state` and are updated right after each splice, so they are exact however
 * the call ends.  EINTR is returned as an error (state->err), for the caller
 * to run its signal handlers and call again.
 *
 * Arguments that cannot make a step are refused with EINVAL before any
 * splice: pipe_size 0 (splice of 0 bytes returns 0, which would read as end
 * of stream) and a budget of 0 or less (one splice would move bytes past
 * it), in state->err like every other error.  A NULL state has nowhere to
 * say why: ZC_STEP_ERROR with errno set, the one case that leaves errno.
 */
static int zc_relay_step(int src, int pipe_r, int pipe_w, int dst,
                         size_t pipe_size, int64_t budget,
                         struct zc_relay_state *state)
{
    int64_t moved = 0;
    ssize_t n;

    if (state == NULL) {
        errno = EINVAL;
        return ZC_STEP_ERROR;
    }
    if (pipe_size == 0 || budget <= 0) {
        state->err = EINVAL;
        errno = EINVAL;
        return ZC_STEP_ERROR;
    }
    /* Neither splice asks for more than is left of the budget, so one call
     * delivers at most `budget` bytes: the caller's bound on the time one
     * call can hold its thread or event loop. */
    for (;;) {
        int64_t left = budget - moved;
        if (state->in_pipe > 0) {
            n = splice(pipe_r, NULL, dst, NULL,
                       (size_t)(state->in_pipe < left ? state->in_pipe : left),
                       SPLICE_F_NONBLOCK);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return ZC_STEP_DST_FULL;
                }
                state->err = errno;
                return ZC_STEP_ERROR;
            }
            if (n == 0) {
                return ZC_STEP_DST_ZERO;
            }
            state->in_pipe -= n;
            state->delivered += n;
            moved += n;
            if (moved >= budget) {
                return ZC_STEP_SPENT;
            }
            continue;
        }
        n = splice(src, NULL, pipe_w, NULL,
                   (int64_t)pipe_size < left ? pipe_size : (size_t)left,
                   SPLICE_F_NONBLOCK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return ZC_STEP_SRC_EMPTY;
            }
            state->err = errno;
            return ZC_STEP_ERROR;
        }
        if (n == 0) {
            return ZC_STEP_SRC_END;
        }
        state->in_pipe += n;
    }
}

/*
 * Register `fd` in hub epoll set `epfd` (op EPOLL_CTL_ADD, _MOD or _DEL)
 * with `events`, tagged with the hub directions it is the source of
 * (`src_of`) and the destination of (`dst_of`), -1 for none.  Both -1 tags
 * the hub's wake-up descriptor.  One system call.
 */
static int zc_hub_ctl(int epfd, int op, int fd, uint32_t events, int32_t src_of,
                      int32_t dst_of)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = (uint64_t)(uint32_t)(src_of + 1) |
                  ((uint64_t)(uint32_t)(dst_of + 1) << 32);
    return epoll_ctl(epfd, op, fd, op == EPOLL_CTL_DEL ? NULL : &ev);
}

static int zc_hub_due(const struct zc_hub_dir *d)
{
    if (d->state == NULL) {
        return 0; /* a free slot */
    }
    return d->want == ZC_WANT_RUN ||
           (d->want == ZC_WANT_SRC && (d->ready & ZC_READY_SRC)) ||
           (d->want == ZC_WANT_DST && (d->ready & ZC_READY_DST));
}

static void zc_hub_report_one(struct zc_hub_dir *dirs, int index, int reason,
                              struct zc_hub_report *out, int *n_out)
{
    if (index >= 0) {
        if (dirs[index].ready & ZC_READY_REPORTED) {
            return;
        }
        dirs[index].ready |= ZC_READY_REPORTED;
    }
    out[*n_out].index = index;
    out[*n_out].reason = reason;
    (*n_out)++;
}

static int zc_hub_at_mark(int fd)
{
    int at = 0;
    if (ioctl(fd, SIOCATMARK, &at) < 0) {
        return 0; /* not TCP (a Unix socket): there is no mark */
    }
    return at != 0;
}

/* Milliseconds from now to `deadline`, 0 if it passed. */
static int zc_ms_left(const struct timespec *deadline)
{
    struct timespec now;
    int64_t ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 +
         (deadline->tv_nsec - now.tv_nsec) / 1000000;
    if (ms <= 0) {
        return 0;
    }
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/*
 * The relay hub's pump: wait on `epfd` (edge-triggered registrations made
 * with zc_hub_ctl) and run zc_relay_step for every direction of `dirs`
 * that is due, round after round, until a direction needs a decision.
 *
 * A round: one epoll_wait (without waiting when a direction is due
 * already), readiness noted in each direction's `ready`, then one step of
 * at most `budget` bytes for every due direction, in index order (so one
 * busy direction cannot starve the others: the fairness rule, per
 * direction).  After a step, the direction waits for what stopped it:
 * ZC_STEP_SRC_EMPTY -> ZC_WANT_SRC, ZC_STEP_DST_FULL -> ZC_WANT_DST,
 * ZC_STEP_SPENT -> ZC_WANT_RUN.  Everything else is reported
 * (ZC_HUB_STOPPED, the status in `status`, the direction left at
 * ZC_WANT_NONE): end of stream, an error (EINTR included, so the caller's
 * signal handlers run), a destination that took 0 bytes, and a source that
 * gave nothing at its TCP urgent mark.  A direction without a pipe
 * (pipe_r < 0) is reported ZC_HUB_NEED_PIPE instead of stepped, one without
 * ZC_HUB_STEP ZC_HUB_READY; both are left at ZC_WANT_NONE.
 *
 * Returns the number of reports written to `out` (at most one per
 * direction, plus the wake-up): after the first round that has any, after
 * `max_rounds` rounds, when an epoll_wait of `timeout_ms` in all (-1: no
 * limit) found nothing, or 0 on EINTR from epoll_wait.  -1 with errno on
 * an epoll_wait failure, or EINVAL for arguments that cannot make a round
 * (`max_out` below `ndirs` + 1, a budget or max_rounds below 1).  Counts are
 * the directions' own `state`, exact however the call ends; no allocation.
 * A slot whose `state` is NULL is free: never stepped nor reported.
 */
static int zc_hub_run(int epfd, struct zc_hub_dir *dirs, int ndirs, int64_t budget,
                      int timeout_ms, int max_rounds, struct zc_hub_report *out,
                      int max_out)
{
    struct epoll_event ev[64];
    struct timespec deadline;
    int n_out = 0;
    int round, i, k, n;

    if (ndirs < 0 || (ndirs > 0 && dirs == NULL) || out == NULL ||
        max_out < ndirs + 1 || budget <= 0 || max_rounds <= 0) {
        errno = EINVAL;
        return -1;
    }
    for (i = 0; i < ndirs; i++) {
        dirs[i].ready &= ~ZC_READY_REPORTED;
    }
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    for (round = 0; round < max_rounds; round++) {
        int wait_ms = 0;
        int due = 0;

        for (i = 0; i < ndirs && !due; i++) {
            due = zc_hub_due(&dirs[i]);
        }
        if (!due) {
            wait_ms = timeout_ms < 0 ? -1 : timeout_ms == 0 ? 0 : zc_ms_left(&deadline);
        }
        n = epoll_wait(epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), wait_ms);
        if (n < 0) {
            return errno == EINTR ? n_out : -1;
        }
        for (k = 0; k < n; k++) {
            uint64_t tag = ev[k].data.u64;
            uint32_t e = ev[k].events;
            uint32_t s = (uint32_t)(tag & 0xffffffffu);
            uint32_t t = (uint32_t)(tag >> 32);

            if (tag == 0) {
                zc_hub_report_one(dirs, -1, ZC_HUB_WOKEN, out, &n_out);
                continue;
            }
            if (s > 0 && s <= (uint32_t)ndirs) {
                struct zc_hub_dir *d = &dirs[s - 1];
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                    d->ready |= ZC_READY_SRC;
                }
                if (e & EPOLLPRI) {
                    d->ready |= ZC_READY_SRC | ZC_READY_URG;
                }
                if (d->state != NULL && d->want == ZC_WANT_NONE && (e & (EPOLLERR | EPOLLHUP))) {
                    zc_hub_report_one(dirs, (int)s - 1, ZC_HUB_EVENT, out, &n_out);
                }
            }
            if (t > 0 && t <= (uint32_t)ndirs) {
                struct zc_hub_dir *d = &dirs[t - 1];
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
                    d->ready |= ZC_READY_DST;
                }
                if (d->state != NULL && d->want == ZC_WANT_NONE && (e & (EPOLLERR | EPOLLHUP))) {
                    zc_hub_report_one(dirs, (int)t - 1, ZC_HUB_EVENT, out, &n_out);
                }
            }
        }
        for (i = 0; i < ndirs; i++) {
            struct zc_hub_dir *d = &dirs[i];
            int64_t before;
            int status;

            if (!zc_hub_due(d)) {
                continue;
            }
            if (!(d->flags & ZC_HUB_STEP) || d->pipe_r < 0) {
                d->want = ZC_WANT_NONE;
                zc_hub_report_one(dirs, i, (d->flags & ZC_HUB_STEP) ? ZC_HUB_NEED_PIPE : ZC_HUB_READY,
                                  out, &n_out);
                continue;
            }
            before = d->state->delivered + d->state->in_pipe;
            status = zc_relay_step(d->src, d->pipe_r, d->pipe_w, d->dst,
                                   (size_t)d->pipe_size, budget, d->state);
            d->status = status;
            if (status == ZC_STEP_SRC_EMPTY) {
                /* EAGAIN at the urgent mark is not an empty socket, and with
                 * every byte arrived no edge comes again: a step that read
                 * nothing, or one after urgent data showed, looks for it. */
                int look = d->state->delivered + d->state->in_pipe == before ||
                           (d->ready & ZC_READY_URG);
                d->ready &= ~(ZC_READY_SRC | ZC_READY_URG);
                d->want = ZC_WANT_SRC;
                if (look && zc_hub_at_mark(d->src)) {
                    d->want = ZC_WANT_NONE; /* stopped at the urgent mark: Python reads past it */
                    zc_hub_report_one(dirs, i, ZC_HUB_STOPPED, out, &n_out);
                }
            } else if (status == ZC_STEP_DST_FULL) {
                d->ready &= ~ZC_READY_DST;
                d->want = ZC_WANT_DST;
            } else if (status == ZC_STEP_SPENT) {
                d->want = ZC_WANT_RUN;
            } else {
                d->want = ZC_WANT_NONE;
                zc_hub_report_one(dirs, i, ZC_HUB_STOPPED, out, &n_out);
            }
        }
        if (n_out > 0) {
            return n_out;
        }
        if (n == 0 && wait_ms != 0) {
            return 0; /* waited the whole timeout: nothing due, nothing came */
        }
        if (timeout_ms == 0 && n == 0) {
            int any = 0;
            for (i = 0; i < ndirs && !any; i++) {
                any = zc_hub_due(&dirs[i]);
            }
            if (!any) {
                return 0;
            }
        }
    }
    return n_out;
}

/*
 * Parse the control data of one recvmsg(MSG_ERRQUEUE) into at most `max`
 * records.  Every IP_RECVERR / IPV6_RECVERR message is reported, whatever its
 * origin, so that Python can tell completions from other queued errors.
 * Returns the number of records written; never reads past `controllen`.
 *
 * The walk copies each header out with memcpy instead of using CMSG_NXTHDR,
 * so `control` may sit at any alignment (callers pass Python bytes).
 */
static int zc_parse_completions(const void *control, size_t controllen,
                                struct zc_completion *out, int max)
{
    const char *base = (const char *)control;
    size_t off = 0;
    int n = 0;

    if (control == NULL || out == NULL || max <= 0) {
        return 0;
    }
    while (n < max && controllen - off >= sizeof(struct cmsghdr)) {
        struct cmsghdr hdr;
        struct sock_extended_err ee;

        size_t avail;

        memcpy(&hdr, base + off, sizeof(hdr));
        if (hdr.cmsg_len < sizeof(struct cmsghdr)) {
            break; /* malformed: stop rather than guess */
        }
        /* A message cut short (MSG_CTRUNC, or a length that claims more than
         * was given) still yields its record if the record itself is whole. */
        avail = hdr.cmsg_len < controllen - off ? hdr.cmsg_len : controllen - off;
        if (((hdr.cmsg_level == SOL_IP && hdr.cmsg_type == IP_RECVERR) ||
             (hdr.cmsg_level == SOL_IPV6 && hdr.cmsg_type == IPV6_RECVERR)) &&
            avail >= CMSG_LEN(sizeof(ee))) {
            memcpy(&ee, base + off + CMSG_LEN(0), sizeof(ee));
            out[n].first = ee.ee_info;
            out[n].last = ee.ee_data;
            out[n].code = ee.ee_code;
            out[n].origin = ee.ee_origin;
            out[n].err = (int32_t)ee.ee_errno;
            n++;
        }
        /* A length that claims every byte left (or more) ends the walk before
         * it is aligned: CMSG_ALIGN of a length near SIZE_MAX wraps to a small
         * number, and `off += 0` would loop for ever where no signal reaches. */
        if (hdr.cmsg_len >= controllen - off ||
            CMSG_ALIGN(hdr.cmsg_len) >= controllen - off) {
            break;
        }
        off += CMSG_ALIGN(hdr.cmsg_len);
    }
    return n;
}

/*
 * One non-blocking recvmsg(MSG_ERRQUEUE) on `sockfd`, parsed into `out`.
 * Returns the number of records (0 when the message carried none), or -1 with
 * errno set: EAGAIN when the error queue is empty.
 */
static int zc_recv_completions(int sockfd, struct zc_completion *out, int max)
{
    union {
        char buf[ZC_COMPLETION_CONTROL_SIZE];
        struct cmsghdr align;
    } control;
    struct msghdr msg;
    ssize_t r;

    memset(&msg, 0, sizeof(msg));
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    r = recvmsg(sockfd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (r < 0) {
        return -1;
    }
    return zc_parse_completions(control.buf, msg.msg_controllen, out, max);
}
