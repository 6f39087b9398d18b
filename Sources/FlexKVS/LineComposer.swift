/// A short reply line (a text GET's `VALUE <key> <flags> <bytes> [<cas>]\r\n`, a number)
/// composed in a stack buffer and appended to a session's output at once: one
/// capacity check and copy instead of one per piece.
///
/// Invariant: at most `capacity` bytes are put (the longest line composed: `VALUE `, a
/// 250-byte key, three 20-digit numbers, their spaces and CR LF, is 321 bytes);
/// `compose` traps past it rather than write outside the buffer.
struct LineComposer {
    static let capacity = 336

    private let base: UnsafeMutableRawPointer
    private(set) var count = 0

    private init(base: UnsafeMutableRawPointer) { self.base = base }

    /// Composes a line with `body` and appends it to `session`'s output.
    @inline(__always)
    static func compose(into session: Session, _ body: (inout LineComposer) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: capacity, alignment: 8) { buffer in
            var line = LineComposer(base: buffer.baseAddress!)
            body(&line)
            session.write(UnsafeRawBufferPointer(start: buffer.baseAddress!, count: line.count))
        }
    }

    @inline(__always) mutating func put(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= Self.capacity, "reply line over \(Self.capacity) bytes")
        if let source = bytes.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
    }

    @inline(__always) mutating func put(_ text: StaticString) {
        put(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    @inline(__always) mutating func put(byte: UInt8) {
        precondition(count < Self.capacity, "reply line over \(Self.capacity) bytes")
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    /// An unsigned decimal, without making a String.
    @inline(__always) mutating func put<T: BinaryInteger>(number n: T) {
        var v = UInt64(n)
        var digits = 1
        var rest = v / 10
        while rest > 0 { digits += 1; rest /= 10 }
        precondition(count + digits <= Self.capacity, "reply line over \(Self.capacity) bytes")
        var i = count + digits
        repeat {
            i -= 1
            base.storeBytes(of: UInt8(v % 10) + 0x30, toByteOffset: i, as: UInt8.self)
            v /= 10
        } while v > 0
        count += digits
    }
}
