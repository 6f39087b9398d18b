#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The registers through which the receive pipeline hands cumulative DCCP
/// acknowledgements to the node's senders: one per local sending connection, indexed by
/// the connection's DCCP source port minus `basePort`.
///
/// Cumulative acks need no queue: a register holds the highest acknowledged sequence
/// number, and a sender only ever wants the newest. Next to it the register counts
/// duplicate acks (the same number again: the receiver dropped a later packet), which
/// TCP's fast retransmit reads. The pipeline (one thread at a time) writes a register;
/// its sender reads it. Each register has its own cache line.
public final class AckBoard: @unchecked Sendable {
    public let basePort: UInt16
    public let count: Int
    let registers: UnsafeMutableRawPointer
    static let stride = 64

    /// Registers for DCCP ports `basePort ..< basePort + count`.
    public init(basePort: UInt16, count: Int) {
        precondition(count > 0 && Int(basePort) + count <= 65_536, "ack board ports out of range")
        self.basePort = basePort
        self.count = count
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, count * Self.stride) == 0, let raw = p else { fatalError("AckBoard: out of memory") }
        registers = raw
        for i in 0..<count {
            register(i).initialize(to: Atomic(0))
            duplicates(i).initialize(to: Atomic(0))
        }
    }

    deinit { free(registers) }

    @inline(__always)
    func register(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (registers + i &* Self.stride).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @inline(__always)
    func duplicates(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (registers + i &* Self.stride + 8).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// The DCCP port of register `index`.
    public func port(of index: Int) -> UInt16 { basePort &+ UInt16(index) }

    /// Raises the register of `port` to `acknowledgement` (never lowers it), or counts
    /// a duplicate if it holds that number already. False if the port has no register
    /// (an ack for no local connection).
    @inline(__always)
    public func record(port: UInt16, acknowledgement: UInt64) -> Bool {
        let i = Int(port) &- Int(basePort)
        guard i >= 0 && i < count else { return false }
        let r = register(i)
        let current = r.pointee.load(ordering: .relaxed)
        if acknowledgement > current {
            r.pointee.store(acknowledgement, ordering: .releasing)
        } else if acknowledgement == current {
            duplicates(i).pointee.wrappingAdd(1, ordering: .relaxed)
        }
        return true
    }

    /// Duplicate acks seen on register `index`'s connection so far.
    @inline(__always)
    public func duplicateAcks(_ index: Int) -> UInt64 { duplicates(index).pointee.load(ordering: .relaxed) }

    /// The highest sequence number acknowledged on register `index`'s connection.
    @inline(__always)
    public func acknowledged(_ index: Int) -> UInt64 { register(index).pointee.load(ordering: .acquiring) }
}
