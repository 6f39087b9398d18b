import Synchronization

/// Port counters, updated once per burst with relaxed atomic adds (any thread).
public final class PortCounters: Sendable {
    let receivedPackets = Atomic<UInt64>(0)
    let receivedBytes = Atomic<UInt64>(0)
    let transmittedPackets = Atomic<UInt64>(0)
    let transmittedBytes = Atomic<UInt64>(0)
    let receiveDrops = Atomic<UInt64>(0)
    let transmitErrors = Atomic<UInt64>(0)

    public init() {}

    @inlinable func add(_ counter: borrowing Atomic<UInt64>, _ n: Int) {
        if n != 0 { counter.wrappingAdd(UInt64(n), ordering: .relaxed) }
    }

    public func countReceived(packets: Int, bytes: Int) {
        add(receivedPackets, packets)
        add(receivedBytes, bytes)
    }
    public func countTransmitted(packets: Int, bytes: Int) {
        add(transmittedPackets, packets)
        add(transmittedBytes, bytes)
    }
    public func countReceiveDrops(_ n: Int) { add(receiveDrops, n) }
    public func countTransmitErrors(_ n: Int) { add(transmitErrors, n) }

    public var snapshot: PortStatistics {
        var s = PortStatistics()
        s.receivedPackets = receivedPackets.load(ordering: .relaxed)
        s.receivedBytes = receivedBytes.load(ordering: .relaxed)
        s.transmittedPackets = transmittedPackets.load(ordering: .relaxed)
        s.transmittedBytes = transmittedBytes.load(ordering: .relaxed)
        s.receiveDrops = receiveDrops.load(ordering: .relaxed)
        s.transmitErrors = transmitErrors.load(ordering: .relaxed)
        return s
    }
}
