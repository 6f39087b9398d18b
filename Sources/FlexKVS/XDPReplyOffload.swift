import CBPF
import FlexIO
import FlexNIC
import FlexWire
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The eBPF objects built into this module: BPFProgramPlugin adds one base64 constant
/// per `XDP/*.bpf.c` (empty when the build had no clang bpf target or libbpf headers).
enum BPFObjects {}

/// Reply offload before the network stack (BMC, NSDI '21): `XDP/kvs_reply_offload.bpf.c`
/// attached to an interface answers single-key memcached UDP `get`s for the keys its
/// map holds with XDP_TX; the server's reply table keeps that map as its `mirror`, so
/// the map holds exactly the table's hot keys and a key is deleted from it before any
/// change to the key is acknowledged.
///
/// The program is attached through a BPF link owned by this object: it is detached
/// when the object goes, and by the kernel when the process dies however it dies, so a
/// killed server never leaves a program answering from a map nobody keeps current.
/// Native XDP where the driver has it (veth), generic XDP elsewhere (lo).
///
/// Map layouts (the program's `struct reply_key` and `struct reply_value`): a key is
/// its length (UInt32) and its bytes zero-padded to 252; a value is the reply's length
/// (UInt32) and up to 1,024 bytes of reply. Calls come from any worker: each is one
/// system call on the map, which the kernel serialises.
public final class XDPReplyOffload: ReplyMirror, @unchecked Sendable {
    public let interface: String
    /// "native" or "generic".
    public let mode: String
    var attachment: cbpf_attachment
    let repliesMap: Int32
    let countersMap: Int32
    static let keySize = 256
    static let valueSize = 4 + 1024

    /// What the program did so far, summed over CPUs.
    public struct Counters: Sendable, Equatable {
        /// GETs answered in XDP, single-key GETs for keys the map did not hold, and hits
        /// the frame could not grow to carry (passed to the server).
        public var hits: UInt64 = 0
        public var misses: UInt64 = 0
        public var noRoom: UInt64 = 0
    }

    /// Loads the program, points it at `address` (`.any`: every address) and UDP
    /// `port`, and attaches it to `interface`.
    public init(interface: String, address: IPv4Address, port: UInt16) throws {
        func failure(_ what: String, _ rc: Int32) -> PortError {
            PortError("--xdp-offload \(interface): \(what) (\(String(cString: strerror(-rc))))")
        }
        guard let bytes = Data(base64Encoded: BPFObjects.kvsReplyOffload), !bytes.isEmpty else {
            throw PortError("--xdp-offload: this flexkvs was built without its eBPF program (clang's bpf target or libbpf-dev was missing at build time; "
                            + "after installing them, `bash Scripts/setup.sh` drops the empty program so that `swift build` makes it)")
        }
        let index = if_nametoindex(interface)
        guard index != 0 else { throw PortError("--xdp-offload \(interface): no such interface") }
        var a = cbpf_attachment()
        var rc = bytes.withUnsafeBytes { cbpf_load($0.baseAddress, $0.count, &a) }
        guard rc == 0 else { throw failure("the kernel refused the XDP program; it needs root and Linux 5.18 or later", rc) }
        var attached = false
        defer { if !attached { cbpf_close(&a) } }
        repliesMap = cbpf_map(&a, "replies")
        countersMap = cbpf_map(&a, "counters")
        let configMap = cbpf_map(&a, "config")
        guard repliesMap >= 0, countersMap >= 0, configMap >= 0 else { throw failure("the eBPF object lacks its maps", -ENOENT) }
        var configuration: (UInt32, UInt32) = (address.value.bigEndian, UInt32(port))
        var zero: UInt32 = 0
        rc = cbpf_map_update(configMap, &zero, &configuration)
        guard rc == 0 else { throw failure("cannot configure the program", rc) }
        rc = cbpf_attach_xdp(&a, "kvs_reply_offload", index)
        guard rc == 0 else { throw failure("cannot attach (is another XDP program attached?)", rc) }
        mode = a.mode == 1 ? "native" : a.mode == 3 ? "offloaded" : "generic"
        self.interface = interface
        attachment = a
        attached = true
    }

    deinit { cbpf_close(&attachment) }

    /// Detaches the program (the server stopped): datagrams reach the server's socket
    /// again. The maps stay readable until the object goes.
    public func detach() { cbpf_detach(&attachment) }

    public func install(key: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer) {
        guard key.count <= 250, reply.count <= Self.valueSize - 4 else { return }
        withUnsafeTemporaryAllocation(byteCount: Self.keySize + Self.valueSize, alignment: 8) { scratch in
            let k = scratch.baseAddress!, v = k + Self.keySize
            Self.writeKey(key, at: k)
            v.storeBytes(of: UInt32(reply.count), as: UInt32.self)
            (v + 4).copyMemory(from: reply.baseAddress!, byteCount: reply.count)
            _ = cbpf_map_update(repliesMap, k, v)
        }
    }

    public func remove(key: UnsafeRawBufferPointer) {
        guard key.count <= 250 else { return }
        withUnsafeTemporaryAllocation(byteCount: Self.keySize, alignment: 8) { scratch in
            Self.writeKey(key, at: scratch.baseAddress!)
            _ = cbpf_map_delete(repliesMap, scratch.baseAddress!)
        }
    }

    static func writeKey(_ key: UnsafeRawBufferPointer, at k: UnsafeMutableRawPointer) {
        k.initializeMemory(as: UInt8.self, repeating: 0, count: keySize)
        k.storeBytes(of: UInt32(key.count), as: UInt32.self)
        if key.count > 0 { (k + 4).copyMemory(from: key.baseAddress!, byteCount: key.count) }
    }

    /// Entries the map holds now (walks the map: for tests, not the hot path).
    public var entries: Int {
        var n = 0
        withUnsafeTemporaryAllocation(byteCount: 2 * Self.keySize, alignment: 8) { scratch in
            let current = scratch.baseAddress!, next = current + Self.keySize
            var previous: UnsafeMutableRawPointer? = nil
            while cbpf_map_next_key(repliesMap, previous, next) == 0 {
                n += 1
                current.copyMemory(from: next, byteCount: Self.keySize)
                previous = current
            }
        }
        return n
    }

    public var counters: Counters {
        let cpus = Int(cbpf_possible_cpus())
        var result = Counters()
        guard cpus > 0 else { return result }
        var values = [UInt64](repeating: 0, count: cpus)
        for (i, field) in [\Counters.hits, \Counters.misses, \Counters.noRoom].enumerated() {
            var key = UInt32(i)
            if cbpf_map_lookup(countersMap, &key, &values) == 0 { result[keyPath: field] = values.reduce(0, +) }
        }
        return result
    }
}
