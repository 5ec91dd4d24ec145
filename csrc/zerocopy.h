/*
 * The cdef of zerocopy's C layer, read by csrc/ffi_build.py.
 *
 * Constants are written as `...` so the C compiler fills in the values of the
 * machine that builds the module.  Every function is one system call (or, for
 * zc_parse_completions, a pure parser) that returns -1 and leaves errno set on
 * failure, except zc_relay_step, a pump of two splices that returns why it
 * stopped and keeps its counts in the caller's struct; policy lives in Python.
 *
 * Bump ZC_ABI_VERSION (and zerocopy._cffi._ABI_VERSION with it) whenever a
 * prototype or a struct here changes, so that a stale compiled module is
 * refused at import instead of being called with the wrong signature.
 */

#define ZC_ABI_VERSION ...

#define SPLICE_F_MOVE ...
#define SPLICE_F_NONBLOCK ...
#define SPLICE_F_MORE ...
#define SPLICE_F_GIFT ...
#define MSG_ZEROCOPY ...
#define SO_ZEROCOPY ...
#define SO_EE_ORIGIN_ZEROCOPY ...
#define SO_EE_CODE_ZEROCOPY_COPIED ...
#define ZC_COMPLETION_CONTROL_SIZE ...
#define ZC_STEP_ERROR ...
#define ZC_STEP_SRC_EMPTY ...
#define ZC_STEP_SRC_END ...
#define ZC_STEP_DST_FULL ...
#define ZC_STEP_SPENT ...
#define ZC_STEP_DST_ZERO ...

struct iovec {
    void *iov_base;
    size_t iov_len;
};

/* One relay direction's state across zc_relay_step calls. */
struct zc_relay_state {
    int64_t in_pipe;     /* bytes read from src that dst has not taken yet */
    int64_t delivered;   /* bytes dst has taken, in all calls */
    int32_t err;         /* errno of the last ZC_STEP_ERROR */
};

/* One MSG_ZEROCOPY notification: sends first..last (inclusive, 32-bit,
 * may wrap) were released by the kernel. */
struct zc_completion {
    uint32_t first;
    uint32_t last;
    uint32_t code;     /* SO_EE_CODE_ZEROCOPY_COPIED when the kernel copied */
    uint32_t origin;   /* ee_origin; SO_EE_ORIGIN_ZEROCOPY for completions */
    int32_t err;       /* ee_errno; 0 for a completion */
};

int zc_abi_version(void);

ssize_t zc_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
ssize_t zc_splice(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out,
                  size_t len, unsigned int flags);
ssize_t zc_tee(int fd_in, int fd_out, size_t len, unsigned int flags);
ssize_t zc_vmsplice(int fd, const struct iovec *iov, size_t nr_segs,
                    unsigned int flags);
ssize_t zc_copy_file_range(int fd_in, int64_t *off_in, int fd_out,
                           int64_t *off_out, size_t len, unsigned int flags);
ssize_t zc_send(int sockfd, const void *buf, size_t len, int flags);
int zc_relay_step(int src, int pipe_r, int pipe_w, int dst, size_t pipe_size,
                  int64_t budget, struct zc_relay_state *state);

int zc_parse_completions(const void *control, size_t controllen,
                         struct zc_completion *out, int max);
int zc_recv_completions(int sockfd, struct zc_completion *out, int max);
