#define _GNU_SOURCE
#include "CFlexSys.h"
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/udp.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

enum { CFLEX_MAX_BATCH = 256 };

/* Points message i at datagram i's buffer (`len` bytes) and peer address. */
static void fill_messages(struct mmsghdr *msgs, struct iovec *iov, struct cflex_datagram *batch,
                          unsigned count, int receiving) {
    for (unsigned i = 0; i < count; i++) {
        iov[i].iov_base = batch[i].data;
        iov[i].iov_len = receiving ? batch[i].capacity : batch[i].length;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &batch[i].peer;
        msgs[i].msg_hdr.msg_namelen = sizeof(batch[i].peer);
    }
}

int cflex_recv_batch(int fd, struct cflex_datagram *batch, unsigned count) {
    struct mmsghdr msgs[CFLEX_MAX_BATCH];
    struct iovec iov[CFLEX_MAX_BATCH];
    if (count > CFLEX_MAX_BATCH) count = CFLEX_MAX_BATCH;
    fill_messages(msgs, iov, batch, count, 1);
    int n = recvmmsg(fd, msgs, count, MSG_DONTWAIT, NULL);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        /* A datagram longer than the buffer is cut by the kernel: report the
           buffer-sized prefix and flag the truncation by capacity + 1. */
        batch[i].length = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? batch[i].capacity + 1
                                                                  : msgs[i].msg_len;
    }
    return n;
}

int cflex_send_batch(int fd, struct cflex_datagram *batch, unsigned count) {
    struct mmsghdr msgs[CFLEX_MAX_BATCH];
    struct iovec iov[CFLEX_MAX_BATCH];
    if (count > CFLEX_MAX_BATCH) count = CFLEX_MAX_BATCH;
    fill_messages(msgs, iov, batch, count, 0);
    int n = sendmmsg(fd, msgs, count, MSG_DONTWAIT);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    return n;
}

/* The kernel's limits on one UDP_SEGMENT message: UDP_MAX_SEGMENTS is 64 up to Linux
   6.2 (128 since; kernels before the end of 2021 count the 28 header bytes against
   64 segments' payload too), and the whole must fit one IPv4 datagram. A segmented
   batch is at most 64 datagrams (what KernelUDPPort sends at once). */
enum { CFLEX_MAX_SEGMENTS = 64, CFLEX_MAX_SEGMENTED_BYTES = 65507, CFLEX_MAX_SEGMENTED_BATCH = 64 };

int cflex_udp_segmentation_supported(int fd) {
    int none = 0;  /* a gso_size of 0 leaves the socket as it was */
    return setsockopt(fd, SOL_UDP, UDP_SEGMENT, &none, sizeof none) == 0;
}

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_in *b) {
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

int cflex_send_batch_segmented(int fd, struct cflex_datagram *batch, unsigned count, int *segmenting) {
    if (!*segmenting) return cflex_send_batch(fd, batch, count);
    struct mmsghdr msgs[CFLEX_MAX_SEGMENTED_BATCH];
    struct iovec iov[CFLEX_MAX_SEGMENTED_BATCH];
    union { char bytes[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr aligned; } control[CFLEX_MAX_SEGMENTED_BATCH];
    unsigned runs[CFLEX_MAX_SEGMENTED_BATCH];  /* datagrams in each message */
    if (count > CFLEX_MAX_SEGMENTED_BATCH) count = CFLEX_MAX_SEGMENTED_BATCH;
    unsigned m = 0;
    for (unsigned i = 0; i < count; m++) {
        uint32_t size = batch[i].length;
        size_t bytes = size;
        iov[i] = (struct iovec){ batch[i].data, size };
        unsigned j = i + 1;
        /* Every datagram but the run's last is `size` bytes; the last may be shorter, but
           not empty (the kernel would send nothing for it). */
        while (size > 0 && j < count && j - i < CFLEX_MAX_SEGMENTS && batch[j - 1].length == size
               && batch[j].length <= size && batch[j].length > 0
               && bytes + batch[j].length <= CFLEX_MAX_SEGMENTED_BYTES
               && bytes + batch[j].length + 28 <= (size_t)size * CFLEX_MAX_SEGMENTS
               && same_peer(&batch[j].peer, &batch[i].peer)) {
            iov[j] = (struct iovec){ batch[j].data, batch[j].length };
            bytes += batch[j].length;
            j++;
        }
        struct msghdr *h = &msgs[m].msg_hdr;
        *h = (struct msghdr){ .msg_name = &batch[i].peer, .msg_namelen = sizeof(batch[i].peer),
                              .msg_iov = &iov[i], .msg_iovlen = j - i };
        if (j - i > 1) {
            h->msg_control = control[m].bytes;
            h->msg_controllen = sizeof(control[m].bytes);
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t segment = (uint16_t)size;
            memcpy(CMSG_DATA(c), &segment, sizeof segment);
        }
        runs[m] = j - i;
        i = j;
    }
    int n = sendmmsg(fd, msgs, m, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        /* Refused segmentation (EIO: the route's device cannot checksum for the kernel;
           EINVAL or EMSGSIZE: a segment longer than the path's MTU; ENOPROTOOPT or
           EOPNOTSUPP: a socket or protocol without it): from now on, each datagram
           alone. (A kernel without UDP_SEGMENT, before 4.18, would not refuse it but
           send the run as one datagram: `cflex_udp_segmentation_supported` asks first.) */
        if (runs[0] > 1 && (errno == EIO || errno == EINVAL || errno == EMSGSIZE || errno == ENOPROTOOPT || errno == EOPNOTSUPP)) {
            *segmenting = 0;
            return cflex_send_batch(fd, batch, count);
        }
        return -errno;
    }
    unsigned sent = 0;
    for (int k = 0; k < n; k++) sent += runs[k];
    return (int)sent;
}

int cflex_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cflex_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev = { .events = events, .data.u64 = token };
    int kop = op == CFLEX_EPOLL_ADD ? EPOLL_CTL_ADD : op == CFLEX_EPOLL_DEL ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    return epoll_ctl(epfd, kop, fd, &ev) < 0 ? -errno : 0;
}

int cflex_epoll_wait(int epfd, uint64_t *tokens, uint32_t *masks, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) { tokens[i] = evs[i].data.u64; masks[i] = evs[i].events; }
    return n;
}

int cflex_epoll_wait_ns(int epfd, uint64_t *tokens, uint32_t *masks, int max, uint64_t timeout_ns) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    struct timespec timeout = { .tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u) };
    int forever = timeout_ns == UINT64_MAX;
    static int lacks_pwait2 = 0;
    int n = -1, fallback = __atomic_load_n(&lacks_pwait2, __ATOMIC_RELAXED);
    if (!fallback) {
        n = epoll_pwait2(epfd, evs, max, forever ? NULL : &timeout, NULL);
        if (n < 0 && errno == ENOSYS) {
            __atomic_store_n(&lacks_pwait2, 1, __ATOMIC_RELAXED);
            fallback = 1;
        }
    }
    if (fallback) {
        uint64_t ms = (timeout_ns + 999999u) / 1000000u;
        n = epoll_wait(epfd, evs, max, forever ? -1 : ms > 1000000u ? 1000000 : (int)ms);
    }
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) { tokens[i] = evs[i].data.u64; masks[i] = evs[i].events; }
    return n;
}

int cflex_join_network_namespace(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = setns(fd, CLONE_NEWNET);
    int saved = errno;
    close(fd);
    return rc == 0 ? 0 : -saved;
}

int cflex_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    return -rc;
}

int cflex_current_cpu(void) { return sched_getcpu(); }

int cflex_schedule_when_idle(void) {
    struct sched_param p = { .sched_priority = 0 };
    return sched_setscheduler(0, SCHED_IDLE, &p) == 0 ? 0 : -errno;
}

int cflex_name_thread(const char *name) {
    char short_name[16];
    strncpy(short_name, name, sizeof(short_name) - 1);
    short_name[sizeof(short_name) - 1] = 0;
    return -pthread_setname_np(pthread_self(), short_name);
}

int cflex_accept(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cflex_socket(int type) {
    return socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

int cflex_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cflex_eventfd_signal(int fd) {
    uint64_t one = 1;
    return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

int cflex_eventfd_drain(int fd) {
    uint64_t value;
    return read(fd, &value, sizeof(value)) == sizeof(value) ? 0 : -errno;
}

int cflex_malloc_tune(size_t mmap_threshold, size_t trim_threshold) {
    int ok = mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) && mallopt(M_TRIM_THRESHOLD, (int)trim_threshold);
    return ok ? 0 : -1;
}

enum { HUGE_PAGE = CFLEX_HUGE_PAGE };

void *cflex_region_alloc(size_t bytes, int huge_pages) {
    if (bytes < HUGE_PAGE) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
        memset(p, 0, bytes);
        return p;
    }
    size_t length = (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    /* Map a huge page more, then unmap the unaligned head and the tail. */
    char *m = mmap(NULL, length + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    char *start = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (start > m) munmap(m, (size_t)(start - m));
    size_t tail = (size_t)(m + length + HUGE_PAGE - (start + length));
    if (tail) munmap(start + length, tail);
    madvise(start, length, huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);  /* a kernel without THP refuses: small pages */
    return start;
}

void cflex_region_free(void *region, size_t bytes) {
    if (region == NULL) return;
    if (bytes < HUGE_PAGE) { free(region); return; }
    munmap(region, (bytes + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1));
}

int cflex_unix_listener(const char *path, unsigned mask, int backlog) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return -EEXIST;
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    mode_t old = umask(~mask & 0777);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int err = errno;
    umask(old);
    if (rc != 0 || listen(fd, backlog) != 0) {
        if (rc == 0) err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

int cflex_poll_ns(struct pollfd *fds, unsigned count, uint64_t timeout_ns) {
    struct timespec timeout = { .tv_sec = (time_t)(timeout_ns / 1000000000u), .tv_nsec = (long)(timeout_ns % 1000000000u) };
    int n = ppoll(fds, count, timeout_ns == UINT64_MAX ? NULL : &timeout, NULL);
    return n < 0 ? -errno : n;
}
