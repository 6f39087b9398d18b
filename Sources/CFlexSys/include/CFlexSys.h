/// Thin wrappers over Linux calls that Swift's Glibc module does not expose
/// (they need _GNU_SOURCE) and over the x86 time-stamp counter.
#ifndef CFLEXSYS_H
#define CFLEXSYS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

/// Reads the time-stamp counter (cycles) without serialising.
static inline uint64_t cflex_rdtsc(void) {
#if defined(__x86_64__) || defined(__i386__)
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

/// Asks the cache for the line holding `p` (a hint: never faults, never blocks).
static inline void cflex_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// One datagram of a batch: a buffer to fill (or send) and the IPv4 peer.
struct cflex_datagram {
    void *data;
    uint32_t capacity;   ///< receive: buffer size; send: unused
    uint32_t length;     ///< receive: bytes received; send: bytes to send
    struct sockaddr_in peer;
};

/// recvmmsg over `count` datagrams without blocking; returns how many arrived, 0 if
/// none, or -errno.
int cflex_recv_batch(int fd, struct cflex_datagram *batch, unsigned count);

/// sendmmsg of `count` datagrams; returns how many were sent or -errno.
int cflex_send_batch(int fd, struct cflex_datagram *batch, unsigned count);

/// sendmmsg of up to 64 of `count` datagrams, each run of datagrams to one peer (all as
/// long as its first, the last possibly shorter but not empty; up to 64 and 65,507
/// bytes) as one message with UDP_SEGMENT: the kernel routes and builds the run once and
/// cuts it into datagrams (generic segmentation offload). While `*segmenting` is 0 it
/// sends as `cflex_send_batch`; a route that refuses segmentation sets it to 0 and the
/// batch goes unsegmented. Only for a socket `cflex_udp_segmentation_supported` accepts.
/// Returns how many datagrams were sent (a prefix of the batch), or -errno.
int cflex_send_batch_segmented(int fd, struct cflex_datagram *batch, unsigned count, int *segmenting);

/// Whether the kernel knows UDP_SEGMENT (Linux 4.18) for `fd`: 1 or 0. An older one
/// ignores the option on send and would send a run as one datagram.
int cflex_udp_segmentation_supported(int fd);

/// Moves the calling thread into the network namespace at `path` (e.g.
/// /var/run/netns/NAME); threads it starts later inherit it. 0 or -errno.
int cflex_join_network_namespace(const char *path);

/// epoll helpers: create, add/modify/delete for `fd` with `events`, and wait; the
/// event's 64-bit data word is returned in `tokens`, its event mask in `masks`.
int cflex_epoll_create(void);
int cflex_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);
int cflex_epoll_wait(int epfd, uint64_t *tokens, uint32_t *masks, int max, int timeout_ms);
/// The same with a timeout in nanoseconds (epoll_pwait2; where the kernel lacks it,
/// epoll_wait with the timeout rounded up to milliseconds); UINT64_MAX waits with no
/// timer at all.
int cflex_epoll_wait_ns(int epfd, uint64_t *tokens, uint32_t *masks, int max, uint64_t timeout_ns);

enum {
    CFLEX_EPOLL_ADD = 1, CFLEX_EPOLL_DEL = 2, CFLEX_EPOLL_MOD = 3,
    CFLEX_EPOLLIN = 0x001, CFLEX_EPOLLOUT = 0x004, CFLEX_EPOLLERR = 0x008,
    CFLEX_EPOLLHUP = 0x010, CFLEX_EPOLLRDHUP = 0x2000,
};

/// An AF_INET socket of `type` with SOCK_NONBLOCK | SOCK_CLOEXEC, or -1 with errno.
int cflex_socket(int type);

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; returns the fd or -1 with errno set.
int cflex_accept(int fd, struct sockaddr *addr, socklen_t *len);

/// A non-blocking Unix domain stream socket listening at `path` (a stale socket file
/// there is removed first), created with permissions `mask` (octal, as memcached's -a).
/// Returns the descriptor or -errno.
int cflex_unix_listener(const char *path, unsigned mask, int backlog);

/// A non-blocking eventfd for waking a thread that sleeps in poll(); signal adds one,
/// drain resets it. Return -errno on failure.
int cflex_eventfd(void);
int cflex_eventfd_signal(int fd);
int cflex_eventfd_drain(int fd);

/// ppoll over `count` descriptors with a timeout in nanoseconds (UINT64_MAX: none);
/// returns how many are ready, 0 on timeout, or -errno.
struct pollfd;
int cflex_poll_ns(struct pollfd *fds, unsigned count, uint64_t timeout_ns);

/// Pins the calling thread to `cpu`; returns 0 or -errno.
int cflex_pin_thread(int cpu);
/// The CPU the calling thread runs on (sched_getcpu: the vDSO, a few ns), or -1.
int cflex_current_cpu(void);
/// Puts the calling thread in SCHED_IDLE (it runs only when nothing else would); 0 or -errno.
int cflex_schedule_when_idle(void);
/// Names the calling thread (the first 15 bytes of `name`); returns 0 or -errno.
int cflex_name_thread(const char *name);

/// glibc malloc: allocations of `mmap_threshold` bytes or more get their own mapping
/// (returned to the kernel on free; the threshold no longer slides up), and free heap
/// top past `trim_threshold` bytes is given back. 0 on success.
int cflex_malloc_tune(size_t mmap_threshold, size_t trim_threshold);

/// A transparent huge page's size (x86-64): `cflex_region_alloc` maps regions from this
/// size on, aligned to it.
#define CFLEX_HUGE_PAGE 2097152

/// Zeroed memory for a table or a region of buffers, `bytes` long, 64-byte aligned;
/// NULL when none is left. From CFLEX_HUGE_PAGE on it is a mapping of its own, aligned
/// to that, reserved rather than committed (pages appear as they are touched) and, with
/// `huge_pages`, advised for transparent huge pages: random accesses across it then
/// walk the page tables far less often (where THP is off the kernel uses small pages).
/// Without, it is advised against them, even where THP is `always`: for memory given
/// back in pieces smaller than a huge page, which would split it and which khugepaged
/// may fill again. Smaller requests come from the heap. Free with `cflex_region_free`
/// and the same `bytes`.
void *cflex_region_alloc(size_t bytes, int huge_pages);
void cflex_region_free(void *region, size_t bytes);

/// libFuzzer's driver (linked only into the fuzz build, Sources/flexfuzz): runs the
/// fuzzing loop over `callback` with libFuzzer's command line.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
