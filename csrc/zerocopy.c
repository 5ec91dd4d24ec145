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
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <netinet/in.h>
#include <linux/errqueue.h>

#define ZC_ABI_VERSION 3

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
