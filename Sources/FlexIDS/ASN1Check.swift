/// The `asn1` option's evaluation: a walk over the BER elements from a start offset to the
/// end of the payload, as Snort 2.9's decoder walks them, true at the first element with
/// an encoding the check names.
///
/// What the walk visits, and when it stops (Snort's decoder stops at its first error,
/// and the elements decoded up to it, that one included, are still checked):
/// - Elements follow each other to the end of the payload; a constructed element's
///   content is walked as its children, up to its length or (indefinite length) its
///   end-of-contents element.
/// - A length or tag number too long for 32 bits stops the walk; with `oversize_length`
///   it is a match.
/// - A header cut by the payload's end stops the walk, after checking the length read.
/// - A primitive element longer than the rest of the payload is checked, then stops the
///   walk; a constructed one is walked over what there is.
/// - A primitive element of indefinite length stops the walk.
/// - An element closed by an end-of-contents element has the length of what it held.
/// - At most 256 elements (Snort's default `config asn1`) and 128 nested constructed
///   elements are walked; a 129th stops the walk, unchecked.
///
/// Nothing is allocated: nesting is recursion, bounded by `maximumDepth`.
extension ASN1Check {
    static let maximumElements = 256
    static let maximumDepth = 128

    /// Whether the payload, from `start`, holds an element the check names.
    func holds(in data: UnsafeRawBufferPointer, from start: Int) -> Bool {
        guard start >= 0, start < data.count else { return false }
        if print && !bitstringOverflow && !doubleOverflow && oversizeLength == nil { return true }
        var walk = Walk(check: self, data: data, position: start)
        switch walk.elements(until: data.count, indefinite: false, depth: 0) {
        case .match: return true
        case .overlong: return oversizeLength != nil
        case .stop, .endOfContents, .end: return false
        }
    }

    /// One walk's state: where it is and how many elements it has visited.
    private struct Walk {
        enum Outcome { case end, endOfContents, match, overlong, stop }

        let check: ASN1Check
        let data: UnsafeRawBufferPointer
        var position: Int
        var visited = 0

        /// Visits the elements in `position ..< end`; inside an indefinite-length
        /// element, until its end-of-contents element (`.endOfContents`). `depth`:
        /// the constructed elements around them.
        mutating func elements(until end: Int, indefinite: Bool, depth: Int) -> Outcome {
            while position < end {
                switch element(until: end, depth: depth) {
                case .end: continue
                case .endOfContents where indefinite: return .endOfContents
                case .endOfContents: continue
                case let other: return other
                }
            }
            return .end
        }

        /// Reads, checks and (when constructed) walks into the element at `position`.
        mutating func element(until end: Int, depth: Int) -> Outcome {
            guard visited < ASN1Check.maximumElements else { return .stop }
            visited += 1
            // Identifier: class, constructed bit, tag number (high numbers in base 128).
            let identifier = data[position]
            let constructed = identifier & 0x20 != 0
            var tag = UInt32(identifier & 0x1F)
            position += 1
            guard position < end else { return .stop }
            if tag == 0x1F {
                tag = 0
                var more = true
                while more {
                    let b = data[position]
                    more = b & 0x80 != 0
                    let next = tag &<< 7 | UInt32(b & 0x7F)
                    guard tag == 0 || next > tag else { return .stop }
                    tag = next
                    position += 1
                    guard position < end else { return .stop }
                }
            }
            // Length: short, long (base 256), or indefinite (0x80).
            let first = data[position]
            position += 1
            var length = UInt32(0)
            var indefinite = false
            if first & 0x80 == 0 {
                length = UInt32(first)
                if position >= end && length != 0 { return oversized(length) ? .match : .stop }
            } else if first == 0x80 {
                indefinite = true
                guard position < end else { return .stop }
            } else {
                guard position < end else { return .stop }
                let count = Int(first & 0x7F)
                for k in 0..<count {
                    let next = length &<< 8 | UInt32(data[position])
                    if length != 0 && next <= length { return .overlong }
                    length = next
                    position += 1
                    if position >= end {
                        if length == 0 && k + 1 == count { break }
                        return oversized(length) ? .match : .stop
                    }
                }
            }
            let available = end - position
            if constructed && depth >= ASN1Check.maximumDepth { return .stop }
            // The element's own checks.
            if oversized(length) { return .match }
            if !constructed && length > 0 && available > 0 {
                let leading = data[position]
                if check.bitstringOverflow && tag == 3 && (length &- 1) &<< 3 < UInt32(leading) { return .match }
                if check.doubleOverflow && tag == 9 && leading & 0xC0 == 0 && length > 256 { return .match }
            }
            if length == 0 {
                if indefinite && !constructed { return .stop }
                if !indefinite {
                    // Class, constructed bit, tag and length all zero: end-of-contents.
                    return identifier == 0 && first == 0 ? .endOfContents : .end
                }
                let contentStart = position
                let outcome = elements(until: end, indefinite: true, depth: depth + 1)
                guard case .endOfContents = outcome else { return outcome }
                // Closed: its length is what it held, as Snort's decoder sets it.
                return oversized(UInt32(position - contentStart - 2)) ? .match : .end
            }
            if Int(length) > available {
                guard constructed else { return .stop }
                return elements(until: end, indefinite: false, depth: depth + 1)
            }
            let contentEnd = position + Int(length)
            if constructed {
                let outcome = elements(until: contentEnd, indefinite: false, depth: depth + 1)
                guard case .end = outcome else { return outcome }
            }
            position = contentEnd
            return .end
        }

        func oversized(_ length: UInt32) -> Bool {
            guard let limit = check.oversizeLength, limit != 0 else { return false }
            return length >= limit
        }
    }
}
