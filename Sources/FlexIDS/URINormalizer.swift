/// The normalized request URI, what `http_uri` (and `urilen:...,norm`) see, as Snort's
/// http_inspect with its `profile all` makes it from the raw request target (which
/// `http_raw_uri` sees): `%XX` and IIS's `%uXXXX` decoded, twice over (a `%` that decoding
/// produced is decoded again), `\` read as `/`, runs of `/` as one, and `/./` and
/// `/dir/../` taken out of the path; the query (from `?`) is only decoded.
///
/// Never longer than the raw URI, so an output as long as the input always suffices.
enum URINormalizer {
    /// Writes the normalized form of `raw` into `out` (at least `raw.count` bytes);
    /// returns its length.
    static func normalize(_ raw: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        // Pass 1 and 2: decode into `out`, then decode `out` in place (never grows).
        var n = decode(raw, into: out)
        if out[0..<n].contains(UInt8(ascii: "%")) {
            n = decode(UnsafeRawBufferPointer(rebasing: out[0..<n]), into: out)
        }
        // Path clean-up, in place, up to the query.
        var path = n
        for i in 0..<n where out[i] == UInt8(ascii: "?") {
            path = i
            break
        }
        let rooted = path > 0 && isSlash(out[0])
        var w = 0
        var r = 0
        while r < path {
            var c = out[r]
            if c == UInt8(ascii: "\\") { c = UInt8(ascii: "/") }
            if c == UInt8(ascii: "/") {
                // Skip further slashes and `./` segments; `../` removes the last segment.
                if w > 0 && out[w - 1] == UInt8(ascii: "/") { r += 1; continue }
                if r + 1 < path && out[r + 1] == UInt8(ascii: ".") && (r + 2 == path || isSlash(out[r + 2])) {
                    r += 2
                    continue
                }
                if r + 2 < path && out[r + 1] == UInt8(ascii: ".") && out[r + 2] == UInt8(ascii: ".") && (r + 3 == path || isSlash(out[r + 3])) {
                    // Back to the previous slash (not above the root).
                    if w > 0 { w -= 1 }
                    while w > 0 && out[w] != UInt8(ascii: "/") { w -= 1 }
                    r += 3
                    continue
                }
            }
            out[w] = c
            w += 1
            r += 1
        }
        if w == 0 && rooted {
            // Every segment went: the root stays.
            out[0] = UInt8(ascii: "/")
            w = 1
        }
        if path < n {
            for k in path..<n { out[w + k - path] = out[k] }
            w += n - path
        }
        return w
    }

    static func isSlash(_ c: UInt8) -> Bool { c == UInt8(ascii: "/") || c == UInt8(ascii: "\\") }

    /// One pass of `%XX` / `%uXXXX` decoding (`%u` values above 0xFF keep their low
    /// byte, as IIS's best-fit mapping does for ASCII look-alikes); other bytes as they are.
    static func decode(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        var w = 0
        var i = 0
        let n = input.count
        while i < n {
            if input[i] == UInt8(ascii: "%") {
                if i + 2 < n, let h = RuleParser.hexValue(input[i + 1]), let l = RuleParser.hexValue(input[i + 2]) {
                    out[w] = h << 4 | l
                    w += 1
                    i += 3
                    continue
                }
                if i + 5 < n, input[i + 1] | 0x20 == UInt8(ascii: "u"),
                   RuleParser.hexValue(input[i + 2]) != nil, RuleParser.hexValue(input[i + 3]) != nil,
                   let h = RuleParser.hexValue(input[i + 4]), let l = RuleParser.hexValue(input[i + 5]) {
                    out[w] = h << 4 | l
                    w += 1
                    i += 6
                    continue
                }
            }
            out[w] = input[i]
            w += 1
            i += 1
        }
        return w
    }
}
