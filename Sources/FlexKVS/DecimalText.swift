/// Decimal numbers in requests and stored values, read exactly as memcached reads
/// them: with C's `strtoull`/`strtol` (base 10) behind its `safe_strto*` checks, so that
/// every number a memcached client sends means the same here.
///
/// The rules, for a byte string `text`:
/// - leading C whitespace (space, \t \n \v \f \r) is skipped, then one optional `+` or
///   `-`, then at least one digit;
/// - the number must end at the end of `text`, at a NUL or at whitespace (what follows
///   is ignored: a stored value `12 abc` counts as 12);
/// - a magnitude past the parser's range is refused (ERANGE); a `-` makes the unsigned
///   parsers return the two's complement, refused only where it comes out negative as
///   a signed number (so `-0` is 0, `-1` is refused).
/// The 32-bit readers take the 64-bit result modulo 2^32, as memcached's `uint32_t`
/// and `int32_t` outputs do (flags `4294967296` are stored as 0; a length of
/// `4294967295` is -1).
enum DecimalText {
    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }

    /// The magnitude and sign of the number at the start of `text`, if one ends properly.
    /// `limit` is the largest magnitude accepted for that sign.
    static func scan(_ text: UnsafeRawBufferPointer, negativeLimit: UInt64, positiveLimit: UInt64)
        -> (magnitude: UInt64, negative: Bool)?
    {
        var i = 0
        let n = text.count
        while i < n && isSpace(text[i]) { i += 1 }
        var negative = false
        if i < n && (text[i] == 0x2B || text[i] == 0x2D) {
            negative = text[i] == 0x2D
            i += 1
        }
        let firstDigit = i
        var v: UInt64 = 0
        var overflow = false
        while i < n, text[i] >= 0x30, text[i] <= 0x39 {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(text[i] - 0x30))
            if o1 || o2 { overflow = true }
            v = a
            i += 1
        }
        guard i > firstDigit, !overflow, v <= (negative ? negativeLimit : positiveLimit) else { return nil }
        guard i == n || text[i] == 0 || isSpace(text[i]) else { return nil }
        return (v, negative)
    }

    /// Whether `text` holds a `-` before its first NUL (memcached's `strchr` check).
    static func hasMinus(_ text: UnsafeRawBufferPointer) -> Bool {
        for c in text {
            if c == 0 { return false }
            if c == 0x2D { return true }
        }
        return false
    }

    /// memcached's `safe_strtoull`.
    static func unsigned64(_ text: UnsafeRawBufferPointer) -> UInt64? {
        guard let (m, negative) = scan(text, negativeLimit: .max, positiveLimit: .max) else { return nil }
        let v = negative ? 0 &- m : m
        if Int64(bitPattern: v) < 0 && hasMinus(text) { return nil }
        return v
    }

    /// memcached's `safe_strtoul` into a `uint32_t`.
    static func unsigned32(_ text: UnsafeRawBufferPointer) -> UInt32? {
        unsigned64(text).map { UInt32(truncatingIfNeeded: $0) }
    }

    /// memcached's `safe_strtol` into an `int32_t`.
    static func signed32(_ text: UnsafeRawBufferPointer) -> Int32? {
        guard let (m, negative) = scan(text, negativeLimit: UInt64(Int64.max) + 1, positiveLimit: UInt64(Int64.max)) else {
            return nil
        }
        let v = negative ? 0 &- Int64(truncatingIfNeeded: m) : Int64(m)
        return Int32(truncatingIfNeeded: v)
    }
}
