#define _GNU_SOURCE
#include "CDPDK.h"
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

enum { MAX_BURST = 256 };

/* EAL pins the calling thread to its main lcore, and threads started later inherit
 * that: every worker would share one core. The caller's affinity is restored. */
int cdpdk_eal_init(int argc, char **argv) {
    cpu_set_t before;
    int saved = pthread_getaffinity_np(pthread_self(), sizeof before, &before) == 0;
    int rc = rte_eal_init(argc, argv);
    if (saved) pthread_setaffinity_np(pthread_self(), sizeof before, &before);
    return rc;
}
int cdpdk_thread_cpu_count(void) {
    cpu_set_t set;
    return pthread_getaffinity_np(pthread_self(), sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
}

int cdpdk_thread_register(void) { return rte_thread_register(); }
void cdpdk_thread_unregister(void) { rte_thread_unregister(); }

int cdpdk_eal_cleanup(void) { return rte_eal_cleanup(); }
const char *cdpdk_strerror(int err) { return rte_strerror(err < 0 ? -err : err); }
int cdpdk_errno(void) { return rte_errno; }

uint16_t cdpdk_port_count(void) { return rte_eth_dev_count_avail(); }

int cdpdk_port_by_name(const char *name, uint16_t *port) {
    return rte_eth_dev_get_port_by_name(name, port);
}

int cdpdk_port_info(uint16_t port, struct cdpdk_port_info *info) {
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc != 0) return rc;
    memset(info, 0, sizeof(*info));
    if (di.driver_name) strncpy(info->driver, di.driver_name, sizeof(info->driver) - 1);
    info->max_rx_queues = di.max_rx_queues;
    info->max_tx_queues = di.max_tx_queues;
    info->reta_size = di.reta_size;
    info->hash_key_size = di.hash_key_size;
    info->rss_offloads = di.flow_type_rss_offloads;
    struct rte_ether_addr mac;
    if (rte_eth_macaddr_get(port, &mac) == 0) memcpy(info->mac, mac.addr_bytes, 6);
    return 0;
}

int cdpdk_port_stats(uint16_t port, struct cdpdk_port_stats *s) {
    struct rte_eth_stats st;
    int rc = rte_eth_stats_get(port, &st);
    if (rc != 0) return rc;
    s->ipackets = st.ipackets; s->opackets = st.opackets;
    s->ibytes = st.ibytes; s->obytes = st.obytes;
    s->imissed = st.imissed; s->ierrors = st.ierrors;
    s->oerrors = st.oerrors; s->rx_nombuf = st.rx_nombuf;
    return 0;
}

struct rte_mempool *cdpdk_pool_create(const char *name, unsigned count, unsigned cache, uint16_t dataroom) {
    return rte_pktmbuf_pool_create(name, count, cache, 0, dataroom, (int)rte_socket_id());
}

void cdpdk_pool_free(struct rte_mempool *pool) { rte_mempool_free(pool); }

int cdpdk_port_configure(uint16_t port, uint16_t nrx, uint16_t ntx, uint16_t rx_desc,
                         uint16_t tx_desc, struct rte_mempool *pool, int rss,
                         const uint8_t *key, uint8_t key_len) {
    struct rte_eth_dev_info di;
    int rc = rte_eth_dev_info_get(port, &di);
    if (rc != 0) return rc;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    uint64_t hf = (RTE_ETH_RSS_IPV4 | RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP)
                  & di.flow_type_rss_offloads;
    if (rss && nrx > 1 && hf != 0) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = hf;
        conf.rx_adv_conf.rss_conf.rss_key = (uint8_t *)key;
        conf.rx_adv_conf.rss_conf.rss_key_len = key ? key_len : 0;
    }
    rc = rte_eth_dev_configure(port, nrx, ntx, &conf);
    if (rc != 0) return rc;
    rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    if (rc != 0) return rc;
    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0) socket = 0;
    for (uint16_t q = 0; q < nrx; q++) {
        rc = rte_eth_rx_queue_setup(port, q, rx_desc, (unsigned)socket, NULL, pool);
        if (rc != 0) return rc;
    }
    for (uint16_t q = 0; q < ntx; q++) {
        rc = rte_eth_tx_queue_setup(port, q, tx_desc, (unsigned)socket, NULL);
        if (rc != 0) return rc;
    }
    return 0;
}

int cdpdk_port_start(uint16_t port) {
    int rc = rte_eth_dev_start(port);
    if (rc == 0) rte_eth_promiscuous_enable(port); /* not every vdev supports it */
    return rc;
}
int cdpdk_port_stop(uint16_t port) { return rte_eth_dev_stop(port); }
int cdpdk_port_close(uint16_t port) { return rte_eth_dev_close(port); }

int cdpdk_link_up(uint16_t port) {
    struct rte_eth_link link;
    if (rte_eth_link_get_nowait(port, &link) != 0) return 0;
    return link.link_status == RTE_ETH_LINK_UP;
}

static inline void fill(struct cdpdk_packet *p, struct rte_mbuf *m) {
    p->mbuf = m;
    p->data = rte_pktmbuf_mtod(m, void *);
    p->length = rte_pktmbuf_data_len(m);
    p->capacity = (uint32_t)(m->buf_len - m->data_off);
    p->hash = m->hash.rss;
    p->flags = ((m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) ? CDPDK_PKT_RSS : 0)
             | (m->nb_segs > 1 ? CDPDK_PKT_MULTISEG : 0);
    p->flow = 0;
    p->l3_offset = 0;
    p->l4_offset = 0;
    p->reserved = 0;
}

uint16_t cdpdk_rx_burst(uint16_t port, uint16_t queue, struct cdpdk_packet *pkts, uint16_t n) {
    struct rte_mbuf *mbufs[MAX_BURST];
    if (n > MAX_BURST) n = MAX_BURST;
    uint16_t got = rte_eth_rx_burst(port, queue, mbufs, n);
    for (uint16_t i = 0; i < got; i++) fill(&pkts[i], mbufs[i]);
    return got;
}

uint16_t cdpdk_tx_burst(uint16_t port, uint16_t queue, struct cdpdk_packet *pkts, uint16_t n) {
    struct rte_mbuf *mbufs[MAX_BURST];
    if (n > MAX_BURST) n = MAX_BURST;
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = pkts[i].mbuf;
        m->data_off = (uint16_t)((char *)pkts[i].data - (char *)m->buf_addr);
        m->data_len = (uint16_t)pkts[i].length;
        m->pkt_len = pkts[i].length;
        mbufs[i] = m;
    }
    return rte_eth_tx_burst(port, queue, mbufs, n);
}

int cdpdk_alloc_bulk(struct rte_mempool *pool, struct cdpdk_packet *pkts, unsigned n) {
    struct rte_mbuf *mbufs[MAX_BURST];
    if (n > MAX_BURST) return -EINVAL;
    int rc = rte_pktmbuf_alloc_bulk(pool, mbufs, n);
    if (rc != 0) return rc;
    for (unsigned i = 0; i < n; i++) fill(&pkts[i], mbufs[i]);
    return 0;
}

void cdpdk_free_bulk(struct cdpdk_packet *pkts, unsigned n) {
    for (unsigned i = 0; i < n; i++) rte_pktmbuf_free(pkts[i].mbuf);
}
