import FlexWire

/// One client's protocol state: bytes received and not yet parsed, the replies built
/// for it, and what the protocol is in the middle of. A TCP connection has one for its
/// lifetime; a UDP request gets a fresh one.
public final class Session {
    public enum Dialect { case undecided, text, binary }

    public var dialect: Dialect = .undecided
    /// Received bytes; `consumed` of them are parsed.
    var input = SessionBytes(capacity: 4096)
    var consumed = 0
    /// Reply bytes to send, in order.
    public var output = SessionBytes(capacity: 4096)
    /// Bytes of an over-large value still to throw away (memcached swallows them).
    var swallow = 0
    /// Set when the client asked to close (quit) or sent garbage that ends the session.
    public var closing = false
    /// The first key's hash as the steering pipeline computed it (key steering): the
    /// first lookup uses it instead of hashing again.
    public var hashHint: UInt32?
    /// The keys a scan of the waiting requests hashed (TCP), while the input is as
    /// it was scanned: forgotten whenever it changes.
    /// Not counted: the worker that sets it owns it and outlives its sessions (a
    /// reference counted here cost a retain and a release on every received frame).
    var keyHints: Unmanaged<KeyHints>?
    /// Commands run so far (for per-request cycle accounting).
    public internal(set) var commands = 0
    /// Replies of requests forwarded to other workers, and where they go (TCP under
    /// key steering).
    var order = ReplyOrder()
    /// The store's shard-move count when this session last forwarded a request: while
    /// requests are away, a keyed request goes on only if no shard moved since (a
    /// moved key's earlier requests may still be with its old owner).
    var forwardedAtMove: UInt64 = 0
    /// The connection's id in -vv logs (its flow id).
    var logID: UInt32 = 0
    /// Where the connection's reply frames are addressed (TCP).
    var endpoints: FrameBuilder.Endpoints?
    /// Set while the session waits in a worker's list of sessions to send.
    var queuedForSend = false
    /// Reply bytes after which the protocols stop running further requests until the
    /// output is taken (a TCP client's pipelined requests wait while the replies are
    /// sent: memory is bounded by this plus one reply). UDP sessions have no budget.
    var outputBudget = Int.max
    /// A get whose keys did not all fit the output budget: the rest of its line starts
    /// at `consumed` and is served first once the output has been taken (so one
    /// request for many large values never holds them all at once).
    var pendingRetrieval: TextProtocol.Retrieval?
    /// Where the search for the next newline goes on from (a long line arriving in
    /// pieces is not scanned again from its start each time).
    var scannedTo = 0
    /// Whether complete requests wait because the output passed its budget.
    var heldBack: Bool { output.count >= outputBudget && unparsed > 0 }
    static let tcpOutputBudget = 1 << 20

    public init() {}

    deinit {
        tokenStarts.deallocate()
        tokenEnds.deallocate()
    }

    /// Forgets everything (a UDP session is reused for each datagram).
    public func reset() {
        dialect = .undecided
        input.removeAll()
        consumed = 0
        scannedTo = 0
        pendingRetrieval = nil
        output.removeAll()
        swallow = 0
        closing = false
        commands = 0
        hashHint = nil
        keyHints = nil
    }

    /// The hash of `key`: the pipeline's, for the first key, or the scan's for these
    /// bytes, else computed here.
    @inline(__always) func hash(_ key: UnsafeRawBufferPointer) -> UInt32 {
        if let h = hashHint {
            hashHint = nil
            return h
        }
        if let h = keyHints?._withUnsafeGuaranteedRef({ $0.take(key) }) { return h }
        return KVStore.hash(key)
    }

    /// Appends received bytes.
    public func receive(_ bytes: UnsafeRawBufferPointer) {
        keyHints = nil
        if consumed > 0 && consumed == input.count {
            input.removeAll()
            consumed = 0
            scannedTo = 0
        }
        input.append(contentsOf: bytes)
    }

    /// Drops parsed bytes when they dominate the buffer.
    func compact() {
        keyHints = nil
        if consumed == input.count {
            input.removeAll()
            consumed = 0
            scannedTo = 0
        } else if consumed > 4096 && consumed * 2 > input.count {
            input.removeFirst(consumed)
            scannedTo = max(0, scannedTo - consumed)
            consumed = 0
        }
    }

    var unparsed: Int { input.count - consumed }

    @inline(__always) func write(_ s: StaticString) {
        s.withUTF8Buffer { output.append(contentsOf: UnsafeRawBufferPointer($0)) }
    }
    @_disfavoredOverload @inline(__always) func write(_ s: String) {
        var s = s
        s.withUTF8 { output.append(contentsOf: UnsafeRawBufferPointer($0)) }
    }
    @inline(__always) func write(_ b: UnsafeRawBufferPointer) { output.append(contentsOf: b) }
    /// Appends an unsigned decimal without making a String.
    @inline(__always) func write<T: BinaryInteger>(number n: T) {
        LineComposer.compose(into: self) { $0.put(number: n) }
    }

    /// Appends a 64-bit number in network byte order (a binary incr/decr's value).
    @inline(__always) func writeBE64(_ v: UInt64) { withUnsafeBytes(of: v.bigEndian) { output.append(contentsOf: $0) } }

    /// Token boundaries of the command line being parsed (`TextProtocol.Tokens`).
    let tokenStarts = UnsafeMutablePointer<Int>.allocate(capacity: TextProtocol.maxWords)
    let tokenEnds = UnsafeMutablePointer<Int>.allocate(capacity: TextProtocol.maxWords)
}
