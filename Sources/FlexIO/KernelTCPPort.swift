#if canImport(Glibc)
import Glibc
#endif
import CFlexSys
import FlexWire
import Synchronization

/// A kernel TCP listener presented as an Ethernet port. Each read from a connection
/// becomes a frame with synthesized Ethernet/IPv4/TCP headers (peer as source, the
/// listening address as destination, the byte offset of the data as sequence number)
/// and `Packet.flow` naming the connection; a closed connection arrives as a frame with
/// FIN and no payload. Transmitting a frame writes its TCP payload to the connection
/// named by `flow`; FIN in the frame closes the connection once its output is flushed.
///
/// Queue i has its own `SO_REUSEPORT` listener and epoll set. At most `maxConnections`
/// connections are open over all queues; one more is answered `rejectMessage` and
/// closed, and counted (memcached's -c).
///
/// Backpressure: output the peer does not take at once is buffered; once a
/// connection's backlog passes `pauseThreshold` the port stops reading its requests
/// until the backlog is sent (as memcached stops reading while a reply is being
/// written), then reports an empty frame (no payload, no FIN) so the owner can go on
/// with requests it held back (`isBackpressured`). A backlog past `maxPendingOutput`
/// (an owner that ignores the pause) closes the connection and is counted.
///
/// Every connection the port closes by itself (the peer reset it, it overran its
/// output, a write failed) is reported as a FIN frame on its queue's next receive, like
/// a peer's close, so whoever keeps state per flow frees it at once.
public final class KernelTCPPort: PacketPort, @unchecked Sendable {
    public let name: String
    public var rxQueueCount: Int { queues.count }
    public var txQueueCount: Int { queues.count }
    public let address: IPv4Address
    public let port: UInt16
    public let maxConnections: Int
    public let maxPendingOutput: Int
    public let pauseThreshold: Int
    /// Sent to a connection refused for being over `maxConnections`, before it is closed.
    public let rejectMessage: [UInt8]
    /// The Unix domain socket listened on, if this port is one.
    public private(set) var unixPath: String?
    let queues: [ConnectionQueue]
    /// `queues` again, unretained, for the calls a worker makes every round (an element
    /// read through the array cost a retain and a release each).
    let unretainedQueues: UnretainedReferences<ConnectionQueue>
    let pool: BufferPool
    let counters = PortCounters()
    /// Connections refused for being over `maxConnections`, and closed for unread output.
    let refused = Atomic<UInt64>(0)
    let overrun = Atomic<UInt64>(0)
    /// Open connections over all queues, and connections accepted so far.
    let open = Atomic<Int>(0)
    let accepted = Atomic<UInt64>(0)

    static let listenToken = UInt64.max
    static let headroom = FrameBuilder.tcpHeadersLength

    public convenience init(address: IPv4Address = .loopback, port: UInt16, queues: Int = 1, maxConnections: Int = 1024,
                            maxPendingOutput: Int = 1 << 20, pauseThreshold: Int = 256 << 10, bufferCount: Int = 4096,
                            bufferSize: Int = 2048, rejectMessage: String = "", backlog: Int32 = 1024) throws {
        var listeners: [Int32] = []
        var chosen = port
        do {
            for _ in 0..<queues {
                let fd = try Socket.bound(type: Int32(SOCK_STREAM.rawValue), ip: address, port: chosen, claiming: listeners.isEmpty)
                listeners.append(fd)
                chosen = Socket.localEndpoint(fd).1
                guard listen(fd, backlog) == 0 else { throw Socket.errorText("listen") }
            }
        } catch {
            listeners.forEach { _ = Glibc.close($0) }
            throw error
        }
        try self.init(listeners: listeners, shared: false, address: address, port: chosen, name: "tcp:\(address):\(chosen)",
                      maxConnections: maxConnections, maxPendingOutput: maxPendingOutput, pauseThreshold: pauseThreshold,
                      bufferCount: bufferCount, bufferSize: bufferSize, rejectMessage: rejectMessage)
    }

    /// A Unix domain stream socket at `path` (a stale socket file there is replaced),
    /// its permissions `accessMask` (memcached's -s and -a); every queue accepts from it.
    /// Its connections' frames carry 127.0.0.1, port 0, as the peer.
    public convenience init(unixPath: String, accessMask: UInt32 = 0o700, queues: Int = 1, maxConnections: Int = 1024,
                            maxPendingOutput: Int = 1 << 20, pauseThreshold: Int = 256 << 10, bufferCount: Int = 4096,
                            bufferSize: Int = 2048, rejectMessage: String = "", backlog: Int32 = 1024) throws {
        let fd = cflex_unix_listener(unixPath, accessMask, backlog)
        guard fd >= 0 else { throw Socket.errorText("unix socket \(unixPath)", -fd) }
        try self.init(listeners: Array(repeating: fd, count: queues), shared: true, address: .loopback, port: 0,
                      name: "unix:\(unixPath)", maxConnections: maxConnections, maxPendingOutput: maxPendingOutput,
                      pauseThreshold: pauseThreshold, bufferCount: bufferCount, bufferSize: bufferSize, rejectMessage: rejectMessage)
        self.unixPath = unixPath
    }

    /// Queue i accepts from `listeners[i]` (the same one for all with `shared`).
    init(listeners: [Int32], shared: Bool, address: IPv4Address, port: UInt16, name: String, maxConnections: Int,
         maxPendingOutput: Int, pauseThreshold: Int, bufferCount: Int, bufferSize: Int, rejectMessage: String) throws {
        precondition(!listeners.isEmpty && maxConnections > 0 && maxConnections <= 0xFFFF, "1...65535 connections")
        var made: [ConnectionQueue] = []
        do {
            for (i, fd) in listeners.enumerated() {
                // Any queue may hold every connection: the limit is the server's, not a queue's.
                made.append(try ConnectionQueue(index: i, listener: fd, ownsListener: !shared || i == 0, capacity: maxConnections))
            }
        } catch {
            made.forEach { $0.closeAll() }
            throw error
        }
        queues = made
        unretainedQueues = UnretainedReferences(made)
        self.address = address
        self.port = port
        self.maxConnections = maxConnections
        self.maxPendingOutput = maxPendingOutput
        self.pauseThreshold = pauseThreshold
        self.rejectMessage = Array(rejectMessage.utf8)
        self.name = name
        unixPath = nil
        pool = BufferPool(bufferCount: bufferCount, bufferSize: bufferSize)
    }

    deinit {
        unretainedQueues.deallocate()
        queues.forEach { $0.closeAll() }
        if let unixPath { unlink(unixPath) }
    }

    /// Connections refused (table full) and closed for unread output, so far.
    public var refusedConnections: UInt64 { refused.load(ordering: .relaxed) }
    public var overrunConnections: UInt64 { overrun.load(ordering: .relaxed) }
    /// Open connections over all queues, and connections accepted since the start.
    public var openConnections: Int { open.load(ordering: .relaxed) }
    public var acceptedConnections: UInt64 { accepted.load(ordering: .relaxed) }

    public func readinessDescriptor(queue: Int) -> Int32? { queues[queue].epoll }
    public func lendableEventSet(queue: Int) -> Int32? { queues[queue].epoll }

    public func deliverEvents(queue: Int, tokens: UnsafePointer<UInt64>, masks: UnsafePointer<UInt32>, count: Int) {
        unretainedQueues.with(queue) { deliverEvents($0, tokens: tokens, masks: masks, count: count) }
    }

    func deliverEvents(_ q: ConnectionQueue, tokens: UnsafePointer<UInt64>, masks: UnsafePointer<UInt32>, count: Int) {
        let n = min(count, ConnectionQueue.maxEvents)
        q.tokens.update(from: tokens, count: n)
        q.masks.update(from: masks, count: n)
        q.delivered = n
    }

    public func wait(queue: Int, timeoutMilliseconds: Int) {
        Socket.waitReadable(queues[queue].epoll, timeoutMilliseconds: timeoutMilliseconds)
    }

    public func receive(queue: Int, into batch: PacketBatch) -> Int {
        unretainedQueues.with(queue) { receive($0, queue: queue, into: batch) }
    }

    func receive(_ q: ConnectionQueue, queue: Int, into batch: PacketBatch) -> Int {
        let n: Int
        if q.delivered > 0 {
            n = q.delivered
            q.delivered = 0
        } else {
            n = Int(max(0, cflex_epoll_wait(q.epoll, q.tokens, q.masks, Int32(ConnectionQueue.maxEvents), 0)))
        }
        guard n > 0 || q.hasNotices.load(ordering: .relaxed) else { return 0 }
        let start = batch.count
        var bytes = 0
        q.table.withLock { table in
            // Connections closed by the port (FIN) or writable again (empty frame) since
            // the last receive.
            while let notice = table.notices.last, !batch.isFull, pool.allocate(count: 1, into: batch) == 1 {
                table.notices.removeLast()
                let p = batch.packets + (batch.count - 1)
                writeHeaders(p, FrameBuilder.Endpoints(source: notice.peer.0, destination: address, sourcePort: notice.peer.1,
                                                       destinationPort: port), payload: 0, sequence: 0, fin: notice.closed)
                p.pointee.flow = notice.flow
            }
            // Buffers for every ready connection in one pool lock, those left over (the
            // listener's and loop's events, reads that found nothing) back in one more.
            let reservedStart = batch.count
            let reserved = pool.allocate(upTo: n, into: batch)
            var used = 0
            defer {
                if used < reserved {
                    pool.release(batch.packets + reservedStart + used, count: reserved - used)
                    batch.count -= reserved - used
                }
            }
            for e in 0..<n {
                let token = q.tokens[e], mask = q.masks[e]
                if CoreLoop.isLoopToken(token) { continue }  // a loop's own descriptor, in a lent set
                if token == Self.listenToken {
                    acceptAll(queue: queue, q, &table)
                    continue
                }
                let index = Int(token)
                guard index < table.slots.count, table.slots[index].fd >= 0 else { continue }
                if mask & UInt32(CFLEX_EPOLLOUT) != 0 { flush(q, &table, index) }
                // A paused connection is read only once its peer has closed (RDHUP).
                guard table.slots[index].fd >= 0,
                      mask & UInt32(CFLEX_EPOLLIN | CFLEX_EPOLLHUP | CFLEX_EPOLLERR | CFLEX_EPOLLRDHUP) != 0,
                      used < reserved else { continue }
                let p = batch.packets + (reservedStart + used)
                let room = Int(p.pointee.capacity) - Self.headroom
                let got = read(table.slots[index].fd, p.pointee.data + Self.headroom, room)
                if got < 0 && (errno == EAGAIN || errno == EINTR) { continue }  // the buffer waits for the next one
                used += 1
                let payload = max(got, 0)
                let fin = got <= 0
                // The fields, not the slot: a copy of the slot retained its output array.
                let peer = table.slots[index].peer
                let endpoints = FrameBuilder.Endpoints(source: peer.0, destination: address, sourcePort: peer.1, destinationPort: port)
                writeHeaders(p, endpoints, payload: payload, sequence: UInt32(truncatingIfNeeded: table.slots[index].received),
                             fin: fin)
                p.pointee.flow = q.flowID(queue: queue, index: index, generation: table.slots[index].generation)
                table.slots[index].received &+= UInt64(payload)
                bytes += payload
                if fin { close(q, &table, index, reported: true) }
            }
            q.hasNotices.store(!table.notices.isEmpty, ordering: .relaxed)
        }
        let got = batch.count - start
        counters.countReceived(packets: got, bytes: bytes)
        return got
    }

    func writeHeaders(_ p: UnsafeMutablePointer<Packet>, _ e: FrameBuilder.Endpoints, payload: Int, sequence: UInt32, fin: Bool) {
        let base = p.pointee.data
        let eth = try! EthernetHeader(UnsafeMutableRawBufferPointer(start: base, count: 14))
        eth.etherType = EthernetHeader.EtherType.ipv4.rawValue
        base.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
        IPv4Header.write(at: base + 14, totalLength: 40 + payload, protocolNumber: 6, source: e.source, destination: e.destination)
        TCPHeader.write(at: base + 34, sourcePort: e.sourcePort, destinationPort: e.destinationPort, sequence: sequence,
                        flags: fin ? [.fin, .ack] : [.psh, .ack])
        p.pointee.length = UInt32(Self.headroom + payload)
        p.pointee.flags.insert(.headerChecksumGood)
    }

    func acceptAll(queue: Int, _ q: ConnectionQueue, _ table: inout ConnectionTable) {
        while true {
            var peer = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = unixPath != nil ? cflex_accept(q.listener, nil, nil) : withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    cflex_accept(q.listener, $0, &len)
                }
            }
            guard fd >= 0 else { return }
            // Counted before the check, so accepts on other queues cannot pass -c together.
            let admitted = open.wrappingAdd(1, ordering: .relaxed).newValue <= maxConnections
            guard admitted, let index = table.freeSlot() else {
                open.wrappingSubtract(1, ordering: .relaxed)
                refused.wrappingAdd(1, ordering: .relaxed)
                if !rejectMessage.isEmpty { _ = rejectMessage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
                Glibc.close(fd)
                continue
            }
            accepted.wrappingAdd(1, ordering: .relaxed)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            table.slots[index].fd = fd
            table.slots[index].peer = unixPath == nil ? Socket.endpoint(peer) : (.loopback, 0)
            table.slots[index].received = 0
            table.slots[index].pending = []
            table.slots[index].paused = false
            table.slots[index].closing = false
            _ = cflex_epoll_ctl(q.epoll, Int32(CFLEX_EPOLL_ADD), fd, UInt32(CFLEX_EPOLLIN | CFLEX_EPOLLRDHUP), UInt64(index))
        }
    }

    /// Writes what a connection has pending; stops watching for writability when done.
    func flush(_ q: ConnectionQueue, _ table: inout ConnectionTable, _ index: Int) {
        let fd = table.slots[index].fd
        let n = table.slots[index].pending.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n > 0 { table.slots[index].pending.removeFirst(n) }
        if n < 0 && errno != EAGAIN && errno != EINTR { close(q, &table, index, reported: false); return }
        if table.slots[index].pending.isEmpty {
            if table.slots[index].closing { close(q, &table, index, reported: false); return }
            _ = cflex_epoll_ctl(q.epoll, Int32(CFLEX_EPOLL_MOD), fd, UInt32(CFLEX_EPOLLIN | CFLEX_EPOLLRDHUP), UInt64(index))
            if table.slots[index].paused {
                table.slots[index].paused = false
                notify(q, &table, index, closed: false)
            }
        }
    }

    /// Writes each frame's payload to its connection. Consecutive frames for the same
    /// connection go out in one `sendmsg` while nothing is pending for it (a large
    /// reply is many frames: one system call, not one per frame); what the socket does
    /// not take is kept in order, with the backpressure and overrun rules above.
    public func transmit(queue: Int, _ batch: PacketBatch) -> Int {
        unretainedQueues.with(queue) { transmit($0, batch) }
    }

    func transmit(_ q: ConnectionQueue, _ batch: PacketBatch) -> Int {
        let n = batch.count
        var bytes = 0
        var errors = 0
        q.table.withLock { table in
            var i = 0
            while i < n {
                let flow = batch[i].flow
                guard let index = q.slotIndex(flow: flow, table: table) else { errors += 1; i += 1; continue }
                // The run of frames for this connection, up to the first FIN.
                var count = 0
                while i + count < n && count < ConnectionQueue.maxRun && batch[i + count].flow == flow {
                    let f = batch[i + count]
                    guard let segment = Self.builtSegment(f) ?? Self.parsedSegment(f) else { break }
                    q.iov[count] = iovec(iov_base: f.data + segment.payloadOffset, iov_len: segment.payloadLength)
                    q.fin[count] = segment.fin
                    count += 1
                    if q.fin[count - 1] { break }
                }
                guard count > 0 else { errors += 1; i += 1; continue }
                defer { i += count }
                var credit = 0
                if table.slots[index].pending.isEmpty {
                    var message = msghdr()
                    message.msg_iov = q.iov
                    message.msg_iovlen = count
                    let sent = sendmsg(table.slots[index].fd, &message, Int32(MSG_NOSIGNAL))
                    if sent < 0 && errno != EAGAIN && errno != EINTR {
                        close(q, &table, index, reported: false)  // EPIPE, ECONNRESET: the peer is gone
                        continue
                    }
                    credit = max(0, sent)
                }
                for k in 0..<count {
                    let payload = UnsafeRawBufferPointer(start: q.iov[k].iov_base, count: q.iov[k].iov_len)
                    let written = min(credit, payload.count)
                    credit -= written
                    bytes += payload.count
                    if written < payload.count {
                        if table.slots[index].pending.count + payload.count - written > maxPendingOutput {
                            overrun.wrappingAdd(1, ordering: .relaxed)  // before the peer can see the close
                            close(q, &table, index, reported: false)
                            break
                        }
                        let wasEmpty = table.slots[index].pending.isEmpty
                        table.slots[index].pending.append(contentsOf: payload[written...])
                        let pause = !table.slots[index].paused && table.slots[index].pending.count > pauseThreshold
                        if pause { table.slots[index].paused = true }
                        if wasEmpty || pause {
                            let reading = table.slots[index].paused ? 0 : CFLEX_EPOLLIN
                            _ = cflex_epoll_ctl(q.epoll, Int32(CFLEX_EPOLL_MOD), table.slots[index].fd,
                                                UInt32(reading | CFLEX_EPOLLOUT | CFLEX_EPOLLRDHUP), UInt64(index))
                        }
                    }
                    if q.fin[k] {
                        table.slots[index].closing = true
                        if table.slots[index].pending.isEmpty { close(q, &table, index, reported: false) }
                    }
                }
            }
        }
        counters.countTransmitted(packets: n - errors, bytes: bytes)
        counters.countTransmitErrors(errors)
        pool.release(batch)
        return n
    }

    /// Whether the port holds back `flow`'s requests until its output backlog is sent
    /// (an empty frame will say when).
    public func isBackpressured(queue: Int, flow: UInt32) -> Bool {
        let q = queues[queue]
        return q.table.withLock { table in q.slotIndex(flow: flow, table: table).map { table.slots[$0].paused } ?? false }
    }

    /// Whether queue `queue` keeps frames for its next receive that its readiness
    /// descriptor does not show (connections the port closed or resumed).
    public func holdsFrames(queue: Int) -> Bool { unretainedQueues.with(queue) { $0.hasNotices.load(ordering: .relaxed) } }

    /// Where a frame's TCP payload lies, and whether it carries FIN. Checksums are not
    /// looked at (nor always written: only the payload goes on the socket).
    typealias Segment = (payloadOffset: Int, payloadLength: Int, fin: Bool)

    /// A frame laid out as this process builds them (Ethernet II, IPv4 without options
    /// and unfragmented, TCP without options; lengths agreeing with the frame's), read
    /// at fixed offsets; nil for any other layout, which `parsedSegment` then reads.
    /// Both give the same answer for such a frame (parsing it cost about 170
    /// instructions a reply).
    @inline(__always) static func builtSegment(_ p: Packet) -> Segment? {
        let frame = p.bytes, l4 = EthernetHeader.length + IPv4Header.minimumLength
        guard frame.count >= FrameBuilder.tcpHeadersLength,
              FrameBuilder.builtIPv4(frame, protocolNumber: IPv4Header.Proto.tcp.rawValue) != nil,
              let tcp = try? TCPHeader(UnsafeMutableRawBufferPointer(rebasing: frame[l4...])),
              tcp.headerLength == TCPHeader.minimumLength else { return nil }
        return (FrameBuilder.tcpHeadersLength, frame.count - FrameBuilder.tcpHeadersLength, tcp.flags.contains(.fin))
    }

    static func parsedSegment(_ p: Packet) -> Segment? {
        guard let parsed = try? ParsedFrame(parsing: p.bytes, verifyingChecksum: false),
              parsed.layers.contains(.tcp) else { return nil }
        return (Int(parsed.payloadOffset), Int(parsed.payloadLength), parsed.tcpFlags & TCPHeader.Flags.fin.rawValue != 0)
    }

    /// Queues a frame about connection `index` for the next receive.
    func notify(_ q: ConnectionQueue, _ table: inout ConnectionTable, _ index: Int, closed: Bool) {
        table.notices.append((q.flowID(queue: q.index, index: index, generation: table.slots[index].generation),
                              table.slots[index].peer, closed))
        q.hasNotices.store(true, ordering: .relaxed)
    }

    /// Closes connection `index`; unless its close was already `reported` as a FIN
    /// frame, one is queued for the next receive.
    func close(_ q: ConnectionQueue, _ table: inout ConnectionTable, _ index: Int, reported: Bool) {
        guard table.slots[index].fd >= 0 else { return }
        if !reported {
            notify(q, &table, index, closed: true)
        }
        q.close(&table, index)
        open.wrappingSubtract(1, ordering: .relaxed)
    }

    public func allocate(count: Int, into batch: PacketBatch) -> Int { pool.allocate(count: count, into: batch) }
    public func release(_ batch: PacketBatch) { pool.release(batch) }
    public var statistics: PortStatistics { counters.snapshot }
}

/// One open connection of a queue's table.
struct Connection {
    var fd: Int32 = -1
    var generation: UInt16 = 0
    var peer: (IPv4Address, UInt16) = (.any, 0)
    var received: UInt64 = 0
    /// Output the peer has not taken yet (empty on the fast path).
    var pending: [UInt8] = []
    /// Not read until `pending` is sent (backpressure).
    var paused = false
    var closing = false
}

struct ConnectionTable: ~Copyable {
    var slots: [Connection]
    /// Frames still to be delivered about connections: closed by the port, not by their
    /// peer (FIN), or writable again after a pause (empty).
    var notices: [(flow: UInt32, peer: (IPv4Address, UInt16), closed: Bool)] = []

    func freeSlot() -> Int? { slots.firstIndex { $0.fd < 0 } }
}

/// A queue's listener, epoll set and connection table (guarded by a lock taken once
/// per receive or transmit burst).
final class ConnectionQueue: @unchecked Sendable {
    let index: Int
    let listener: Int32
    /// Whether `notices` is non-empty (read without the lock, to skip idle receives).
    let hasNotices = Atomic<Bool>(false)
    let epoll: Int32
    let table: Mutex<ConnectionTable>
    /// Events of one wait on `epoll`: the receive's own, or delivered by the loop the
    /// set is lent to (`delivered` of them, not yet taken; receiving thread only).
    static let maxEvents = 64
    let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: maxEvents)
    let masks = UnsafeMutablePointer<UInt32>.allocate(capacity: maxEvents)
    var delivered = 0
    /// A transmit run's payloads and FIN flags (used under the table's lock).
    static let maxRun = 64
    let iov = UnsafeMutablePointer<iovec>.allocate(capacity: maxRun)
    let fin = UnsafeMutablePointer<Bool>.allocate(capacity: maxRun)

    /// Whether `listener` is this queue's to close (a Unix socket is shared by all).
    let ownsListener: Bool

    init(index: Int, listener: Int32, ownsListener: Bool, capacity: Int) throws {
        self.index = index
        self.listener = listener
        self.ownsListener = ownsListener
        let ep = cflex_epoll_create()
        guard ep >= 0 else {
            if ownsListener { Glibc.close(listener) }
            throw Socket.errorText("epoll_create", -ep)
        }
        epoll = ep
        table = Mutex(ConnectionTable(slots: Array(repeating: Connection(), count: capacity)))
        _ = cflex_epoll_ctl(ep, Int32(CFLEX_EPOLL_ADD), listener, UInt32(CFLEX_EPOLLIN), KernelTCPPort.listenToken)
    }

    deinit {
        tokens.deallocate()
        masks.deallocate()
        iov.deallocate()
        fin.deallocate()
    }

    /// The flow id of slot `index`: queue (4 bits), generation (12), slot (16).
    func flowID(queue: Int, index: Int, generation: UInt16) -> UInt32 {
        UInt32(queue & 0xF) << 28 | UInt32(generation & 0xFFF) << 16 | UInt32(index)
    }

    /// The slot a flow id names, if that connection is still the one open there.
    func slotIndex(flow: UInt32, table: borrowing ConnectionTable) -> Int? {
        let index = Int(flow & 0xFFFF)
        guard index < table.slots.count, table.slots[index].fd >= 0,
              table.slots[index].generation & 0xFFF == UInt16((flow >> 16) & 0xFFF) else { return nil }
        return index
    }

    func close(_ table: inout ConnectionTable, _ index: Int) {
        guard table.slots[index].fd >= 0 else { return }
        _ = cflex_epoll_ctl(epoll, Int32(CFLEX_EPOLL_DEL), table.slots[index].fd, 0, 0)
        Glibc.close(table.slots[index].fd)
        table.slots[index].fd = -1
        table.slots[index].pending = []
        table.slots[index].generation &+= 1
    }

    func closeAll() {
        table.withLock { t in for i in t.slots.indices { close(&t, i) } }
        Glibc.close(epoll)
        if ownsListener { Glibc.close(listener) }
    }
}
