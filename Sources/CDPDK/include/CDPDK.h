/// A thin shim over DPDK's static-inline fast path. Swift never parses DPDK headers:
/// this header only forward-declares what it hands out, and every call works on a
/// whole burst. Mirrors `FlexIO.Packet` field for field (checked by a test).
#ifndef CDPDK_H
#define CDPDK_H

#include <stdint.h>
#include <stddef.h>

struct rte_mbuf;
struct rte_mempool;

/// One packet of a burst: the mbuf that owns it, where its frame starts and how long it
/// is, the RSS hash the device computed (if flags has CDPDK_PKT_RSS), and the buffer's
/// room from `data` to its end.
struct cdpdk_packet {
    struct rte_mbuf *mbuf;
    void *data;
    uint32_t length;
    uint32_t hash;
    uint32_t capacity;
    uint32_t flags;
    uint32_t flow;       ///< stream ports: connection id; DPDK: 0
    uint8_t l3_offset;   ///< where the IP header starts, once a parser has seen it; else 0
    uint8_t l4_offset;   ///< where the transport header starts, likewise
    uint16_t reserved;
};

enum { CDPDK_PKT_RSS = 1, CDPDK_PKT_MULTISEG = 2 };

struct cdpdk_port_info {
    char driver[48];
    uint16_t max_rx_queues;
    uint16_t max_tx_queues;
    uint16_t reta_size;
    uint8_t hash_key_size;
    uint8_t mac[6];
    uint64_t rss_offloads;
};

struct cdpdk_port_stats {
    uint64_t ipackets, opackets, ibytes, obytes, imissed, ierrors, oerrors, rx_nombuf;
};

/* Initialises EAL; the calling thread keeps its CPU affinity (EAL would pin it). */
int cdpdk_eal_init(int argc, char **argv);
/* Gives the calling (non-EAL) thread an lcore id, so mempool per-lcore caches serve
 * its mbuf allocations and frees; 0 on success. Unregister before the thread ends. */
int cdpdk_thread_register(void);
void cdpdk_thread_unregister(void);
/* CPUs the calling thread may run on (-1 if unknown). */
int cdpdk_thread_cpu_count(void);
int cdpdk_eal_cleanup(void);
/// rte_errno's text for `err` (positive errno or DPDK code).
const char *cdpdk_strerror(int err);
int cdpdk_errno(void);

uint16_t cdpdk_port_count(void);
int cdpdk_port_by_name(const char *name, uint16_t *port);
int cdpdk_port_info(uint16_t port, struct cdpdk_port_info *info);
int cdpdk_port_stats(uint16_t port, struct cdpdk_port_stats *stats);

struct rte_mempool *cdpdk_pool_create(const char *name, unsigned count, unsigned cache, uint16_t dataroom);
void cdpdk_pool_free(struct rte_mempool *pool);

/// Configures `nrx`/`ntx` queues; with `rss` set and the device able, enables RSS on
/// IPv4/TCP/UDP with `key` (NULL: the device default).
int cdpdk_port_configure(uint16_t port, uint16_t nrx, uint16_t ntx, uint16_t rx_desc,
                         uint16_t tx_desc, struct rte_mempool *pool, int rss,
                         const uint8_t *key, uint8_t key_len);
int cdpdk_port_start(uint16_t port);
int cdpdk_port_stop(uint16_t port);
int cdpdk_port_close(uint16_t port);
/// 1 if the link is up, 0 if not.
int cdpdk_link_up(uint16_t port);

uint16_t cdpdk_rx_burst(uint16_t port, uint16_t queue, struct cdpdk_packet *pkts, uint16_t n);
/// Sends up to `n` packets, first setting each mbuf's data offset and length from the
/// packet; returns how many the device took (the rest stay the caller's).
uint16_t cdpdk_tx_burst(uint16_t port, uint16_t queue, struct cdpdk_packet *pkts, uint16_t n);
/// Allocates `n` empty mbufs (all or none); returns 0 or a negative error.
int cdpdk_alloc_bulk(struct rte_mempool *pool, struct cdpdk_packet *pkts, unsigned n);
void cdpdk_free_bulk(struct cdpdk_packet *pkts, unsigned n);

#endif
