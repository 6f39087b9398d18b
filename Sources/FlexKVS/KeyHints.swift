/// The keys a scan of a TCP session's waiting requests found (`RequestKeyScanner`):
/// where each lies in the session's input, how long it is, and its hash. The worker
/// prefetches with the hashes; the protocol, reaching the same key, takes its hash
/// instead of computing it a second time (`Session.hash`).
///
/// Invariants: at most `capacity` keys, in input order. A hint is taken only for a key
/// at the same address with the same length, while the input it was found in is
/// unchanged (the session forgets its hints whenever its input changes: receive,
/// compact, reset): the same bytes, so the same hash. A key a hint does not match is
/// hashed as before, so a hint can be missed but never be wrong. One worker's, used by
/// one session at a time, on that worker's thread.
public final class KeyHints {
    public static let capacity = 64
    let starts = UnsafeMutablePointer<UnsafeRawPointer>.allocate(capacity: capacity)
    let lengths = UnsafeMutablePointer<Int>.allocate(capacity: capacity)
    public let hashes = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
    /// Keys found by the last scan, and the first not yet taken.
    public private(set) var count = 0
    private var next = 0

    public init() {}

    deinit {
        starts.deallocate()
        lengths.deallocate()
        hashes.deallocate()
    }

    /// Forgets every key (before a scan).
    func removeAll() {
        count = 0
        next = 0
    }

    /// Records a key the scan found, and its hash.
    func append(_ key: UnsafeRawBufferPointer, hash: UInt32) {
        precondition(count < Self.capacity, "more than \(Self.capacity) key hints")
        starts[count] = key.baseAddress!
        lengths[count] = key.count
        hashes[count] = hash
        count += 1
    }

    /// The hash recorded for `key` (these very bytes), if any. Keys are looked up in
    /// input order, so hints before `key` (requests the protocol did not look up by
    /// key) are passed over.
    @inline(__always)
    func take(_ key: UnsafeRawBufferPointer) -> UInt32? {
        guard let address = key.baseAddress else { return nil }
        while next < count && starts[next] < UnsafeRawPointer(address) { next &+= 1 }
        guard next < count, starts[next] == UnsafeRawPointer(address), lengths[next] == key.count else { return nil }
        next &+= 1
        return hashes[next &- 1]
    }
}
