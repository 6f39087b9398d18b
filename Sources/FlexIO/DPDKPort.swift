#if canImport(Glibc)
import Glibc
#endif
import CDPDK
import FlexWire

/// An ethdev (PCI or virtual: net_ring, net_memif, net_pcap, net_af_packet, net_tap)
/// with N rx and tx queues, its own mbuf pool, and RSS when the device has it.
/// Packets are mbufs handed over zero-copy; a burst is one shim call.
public final class DPDKPort: PacketPort, @unchecked Sendable {
    public let name: String
    public let portID: UInt16
    public let rxQueueCount: Int
    public let txQueueCount: Int
    public let info: cdpdk_port_info
    let pool: OpaquePointer
    var stopped = false
    var closed = false

    public struct Configuration: Sendable {
        public var rxQueues = 1
        public var txQueues = 1
        public var rxDescriptors: UInt16 = 1024
        public var txDescriptors: UInt16 = 1024
        public var mbufs: UInt32 = 8191
        public var mbufCache: UInt32 = 256
        public var dataRoom: UInt16 = 2048 + 128
        /// RSS key (40 bytes for most devices); nil keeps the device default.
        public var rssKey: [UInt8]? = nil
        public init() {}
    }

    /// Opens the ethdev named `device` (e.g. "net_ring0", or a PCI address) or, if
    /// `device` is a number, that port id. EAL must be initialised.
    public init(device: String, configuration c: Configuration = Configuration()) throws {
        guard DPDKEnvironment.isInitialized else { throw PortError("DPDK: EAL is not initialised") }
        var id: UInt16 = 0
        if let n = UInt16(device) {
            id = n
        } else {
            guard cdpdk_port_by_name(device, &id) == 0 else {
                throw PortError("DPDK: no port named \(device) (\(DPDKEnvironment.portCount) ports probed; is --vdev=\(device) in the EAL arguments?)")
            }
        }
        var i = cdpdk_port_info()
        guard cdpdk_port_info(id, &i) == 0 else { throw PortError("DPDK: port \(id) has no device info") }
        guard c.rxQueues <= Int(i.max_rx_queues), c.txQueues <= Int(i.max_tx_queues) else {
            throw PortError("DPDK: \(device) allows \(i.max_rx_queues) rx / \(i.max_tx_queues) tx queues, asked for \(c.rxQueues) / \(c.txQueues)")
        }
        guard let p = cdpdk_pool_create("flex_pool_\(id)", c.mbufs, c.mbufCache, c.dataRoom) else {
            throw PortError("DPDK: cannot create an mbuf pool of \(c.mbufs) (\(String(cString: cdpdk_strerror(cdpdk_errno())))); raise -m")
        }
        let rss = c.rxQueues > 1 && i.rss_offloads != 0
        let rc = (c.rssKey ?? []).withUnsafeBufferPointer { key in
            cdpdk_port_configure(id, UInt16(c.rxQueues), UInt16(c.txQueues), c.rxDescriptors, c.txDescriptors, p,
                                 rss ? 1 : 0, c.rssKey == nil ? nil : key.baseAddress, UInt8(key.count))
        }
        guard rc == 0 else {
            cdpdk_pool_free(p)
            throw PortError("DPDK: configuring \(device) failed: \(String(cString: cdpdk_strerror(rc)))")
        }
        guard cdpdk_port_start(id) == 0 else {
            cdpdk_pool_free(p)
            throw PortError("DPDK: starting \(device) failed")
        }
        portID = id
        pool = p
        info = i
        rxQueueCount = c.rxQueues
        txQueueCount = c.txQueues
        name = "dpdk:\(device)"
    }

    deinit { close() }

    /// Stops the device (net_pcap flushes its output file); idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        _ = cdpdk_port_stop(portID)
    }

    /// Stops and releases the device and its mbuf pool; the port cannot be opened
    /// again in this process (a vdev is gone once closed).
    public func close() {
        guard !closed else { return }
        stop()
        closed = true
        _ = cdpdk_port_close(portID)
        cdpdk_pool_free(pool)
    }

    public var driverName: String { withUnsafeBytes(of: info.driver) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) } }

    public var macAddress: MACAddress {
        let m = info.mac
        return MACAddress(m.0, m.1, m.2, m.3, m.4, m.5)
    }

    public var isLinkUp: Bool { cdpdk_link_up(portID) == 1 }

    /// Polls the link state until it is up or `timeoutMilliseconds` passes.
    @discardableResult
    public func waitForLink(timeoutMilliseconds: Int = 5000) -> Bool {
        var waited = 0
        while !isLinkUp && waited < timeoutMilliseconds {
            usleep(10_000)
            waited += 10
        }
        return isLinkUp
    }

    @inline(__always) func shimPackets(_ p: UnsafeMutablePointer<Packet>) -> UnsafeMutablePointer<cdpdk_packet> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: cdpdk_packet.self)
    }

    public func receive(queue: Int, into batch: PacketBatch) -> Int {
        let n = Int(cdpdk_rx_burst(portID, UInt16(queue), shimPackets(batch.packets + batch.count), UInt16(batch.freeSpace)))
        batch.count += n
        return n
    }

    public func transmit(queue: Int, _ batch: PacketBatch) -> Int {
        let n = Int(cdpdk_tx_burst(portID, UInt16(queue), shimPackets(batch.packets), UInt16(batch.count)))
        batch.removeFirst(n)
        return n
    }

    public func allocate(count: Int, into batch: PacketBatch) -> Int {
        let n = min(count, batch.freeSpace)
        guard n > 0, cdpdk_alloc_bulk(pool, shimPackets(batch.packets + batch.count), UInt32(n)) == 0 else { return 0 }
        batch.count += n
        return n
    }

    public func release(_ batch: PacketBatch) {
        cdpdk_free_bulk(shimPackets(batch.packets), UInt32(batch.count))
        batch.removeAll()
    }

    public var statistics: PortStatistics {
        var s = cdpdk_port_stats()
        var out = PortStatistics()
        guard cdpdk_port_stats(portID, &s) == 0 else { return out }
        out.receivedPackets = s.ipackets
        out.receivedBytes = s.ibytes
        out.transmittedPackets = s.opackets
        out.transmittedBytes = s.obytes
        out.receiveDrops = s.imissed + s.ierrors + s.rx_nombuf
        out.transmitErrors = s.oerrors
        return out
    }
}
