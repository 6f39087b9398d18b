#if canImport(Glibc)
import Glibc
#endif

/// memcached's statistics and dumps, in its names and shapes, so its tools read them:
/// `stats`, `stats items`, `stats slabs` (items counted in memcached's slab classes),
/// `stats conns`, `stats cachedump`, `lru_crawler metadump`, and flexkvs's own
/// `stats segments` and `stats steering`.
extension KVSContext {
    /// `stats` with no argument: memcached 1.6's names in its order. Counters that
    /// describe memcached's own machinery (slab mover, LRU maintainer, response objects)
    /// are reported as memcached reports them when idle, so tools that read them parse.
    func generalStats() -> [(String, String)] {
        let s = store
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ t: timeval) -> String {
            let micros = String(t.tv_usec)
            return "\(t.tv_sec)." + String(repeating: "0", count: max(0, 6 - micros.count)) + micros
        }
        let io = transport()
        let udp = udpConnections
        let n = { (c: KVStats.Counter) in String(self.reported(c)) }
        return [
            ("pid", String(getpid())), ("uptime", String(s.clock.uptime)), ("time", String(s.clock.unixTime)),
            ("version", Self.version), ("libevent", "none"), ("pointer_size", "64"),
            ("rusage_user", seconds(usage.ru_utime)), ("rusage_system", seconds(usage.ru_stime)),
            ("max_connections", String(maxConnections)),
            ("curr_connections", String(io.currentConnections + udp)),
            ("total_connections", String(io.totalConnections + io.rejectedConnections + UInt64(udp))),
            ("rejected_connections", String(io.rejectedConnections)),
            ("connection_structures", String(io.currentConnections + udp)),
            ("response_obj_oom", "0"), ("response_obj_count", "1"), ("response_obj_bytes", "0"),
            ("read_buf_count", "0"), ("read_buf_bytes", "0"), ("read_buf_bytes_free", "0"), ("read_buf_oom", "0"),
            ("reserved_fds", "0"),
            ("cmd_get", n(.cmdGet)), ("cmd_set", n(.cmdSet)), ("cmd_flush", String(counted(.flushCommands))),
            ("cmd_touch", n(.cmdTouch)), ("cmd_meta", "0"),
            ("get_hits", n(.getHits)), ("get_misses", n(.getMisses)), ("get_expired", n(.getExpired)),
            ("get_flushed", n(.getFlushed)), ("delete_misses", n(.deleteMisses)), ("delete_hits", n(.deleteHits)),
            ("incr_misses", n(.incrMisses)), ("incr_hits", n(.incrHits)), ("decr_misses", n(.decrMisses)),
            ("decr_hits", n(.decrHits)), ("cas_misses", n(.casMisses)), ("cas_hits", n(.casHits)),
            ("cas_badval", n(.casBadval)), ("touch_hits", n(.touchHits)), ("touch_misses", n(.touchMisses)),
            ("store_too_large", String(counted(.storeTooLarge))), ("store_no_memory", String(counted(.storeNoMemory))),
            ("auth_cmds", "0"), ("auth_errors", "0"),
            ("bytes_read", String(io.bytesRead)), ("bytes_written", String(io.bytesWritten)),
            ("limit_maxbytes", String(s.pool.segmentLimit * s.pool.segmentSize)),
            ("accepting_conns", "1"), ("listen_disabled_num", "0"), ("time_in_listen_disabled_us", "0"),
            ("threads", String(threads)), ("conn_yields", "0"),
            ("hash_power_level", "16"), ("hash_bytes", String(s.indexBytes)), ("hash_is_expanding", "0"),
            ("slab_reassign_rescues", "0"), ("slab_reassign_chunk_rescues", "0"), ("slab_reassign_evictions_nomem", "0"),
            ("slab_reassign_inline_reclaim", "0"), ("slab_reassign_busy_items", "0"), ("slab_reassign_busy_deletes", "0"),
            ("slab_reassign_running", "0"), ("slabs_moved", "0"), ("lru_crawler_running", "0"), ("lru_crawler_starts", "0"),
            ("lru_maintainer_juggles", "0"), ("malloc_fails", "0"), ("log_worker_dropped", "0"), ("log_worker_written", "0"),
            ("log_watcher_skipped", "0"), ("log_watcher_sent", "0"), ("log_watchers", "0"), ("unexpected_napi_ids", "0"),
            ("round_robin_fallback", "0"),
            ("bytes", n(.bytes)), ("curr_items", n(.currItems)), ("total_items", n(.totalItems)),
            ("slab_global_page_pool", "0"), ("expired_unfetched", "0"), ("evicted_unfetched", "0"), ("evicted_active", "0"),
            ("evictions", n(.evictions)), ("reclaimed", n(.reclaimed)), ("crawler_reclaimed", "0"),
            ("crawler_items_checked", "0"), ("lrutail_reflocked", "0"), ("moves_to_cold", "0"), ("moves_to_warm", "0"),
            ("moves_within_lru", "0"), ("direct_reclaims", "0"), ("lru_bumps_dropped", "0"),
            // flexkvs's own.
            ("protocol_errors", String(protocolErrors.load(ordering: .relaxed))),
            ("segments_compacted", n(.compactions)), ("items_compacted", n(.compactedItems)),
            ("items_second_chance", n(.secondChances)),
        ]
    }

    /// A report `stats <name>` prints, or nil if there is none of that name.
    func statsReport(_ name: String) -> [(String, String)]? {
        switch name {
        case "items": return itemStats()
        case "slabs": return slabStats()
        case "sizes": return [("sizes_status", "disabled")]
        case "settings":
            return settings.map { name, value in
                switch name {
                case "maxbytes": return (name, String(store.pool.segmentLimit * store.pool.segmentSize))
                case "verbosity": return (name, String(verbosity.load(ordering: .relaxed)))
                case "detail_enabled": return (name, detailEnabled.load(ordering: .relaxed) ? "yes" : "no")
                default: return (name, value)
                }
            }
        case "conns": return connectionStats()
        case "segments": return segmentStats()
        case "steering": return steeringStats()
        default: return nil
        }
    }

    /// Live items per memcached size class: (count, bytes as memcached counts them,
    /// oldest store time in server nanoseconds).
    func itemsByClass() -> [Int: (count: Int, bytes: Int, oldest: UInt64)] {
        var out: [Int: (count: Int, bytes: Int, oldest: UInt64)] = [:]
        let cas = store.configuration.casEnabled
        for p in store.partitions {
            p.withLock { p in
                p.forEachItem { it in
                    let size = SizeClasses.memcachedSize(keyLength: it.keyLength, flags: it.flags, valueLength: it.valueLength, cas: cas)
                    let c = SizeClasses.classID(size: size)
                    let e = out[c] ?? (0, 0, .max)
                    out[c] = (e.count + 1, e.bytes + size, min(e.oldest, it.storedAt))
                }
            }
        }
        return out
    }

    /// `stats items`: memcached's per-class rows (memcached-tool `display`).
    func itemStats() -> [(String, String)] {
        var out: [(String, String)] = []
        let now = store.clock.nanos
        for (c, e) in itemsByClass().sorted(by: { $0.key < $1.key }) {
            let p = "items:\(c):"
            let age = String((now &- e.oldest) / 1_000_000_000)
            out += [(p + "number", String(e.count)), (p + "number_hot", "0"), (p + "number_warm", "0"),
                    (p + "number_cold", String(e.count)), (p + "age_hot", "0"), (p + "age_warm", "0"), (p + "age", age),
                    (p + "mem_requested", String(e.bytes)), (p + "evicted", "0"), (p + "evicted_nonzero", "0"),
                    (p + "evicted_time", "0"), (p + "outofmemory", "0"), (p + "tailrepairs", "0"), (p + "reclaimed", "0"),
                    (p + "expired_unfetched", "0"), (p + "evicted_unfetched", "0"), (p + "evicted_active", "0"),
                    (p + "crawler_reclaimed", "0"), (p + "crawler_items_checked", "0"), (p + "lrutail_reflocked", "0"),
                    (p + "moves_to_cold", "0"), (p + "moves_to_warm", "0"), (p + "moves_within_lru", "0"),
                    (p + "direct_reclaims", "0"), (p + "hits_to_hot", "0"), (p + "hits_to_warm", "0"),
                    (p + "hits_to_cold", "0"), (p + "hits_to_temp", "0")]
        }
        return out
    }

    /// `stats slabs`: memcached's per-class rows, then the totals.
    func slabStats() -> [(String, String)] {
        var out: [(String, String)] = []
        let classes = itemsByClass().sorted(by: { $0.key < $1.key })
        for (c, e) in classes {
            let size = SizeClasses.sizes[c - 1]
            let perPage = max(1, SizeClasses.pageSize / size)
            let pages = (e.count + perPage - 1) / perPage
            let p = "\(c):"
            out += [(p + "chunk_size", String(size)), (p + "chunks_per_page", String(perPage)),
                    (p + "total_pages", String(pages)), (p + "total_chunks", String(pages * perPage)),
                    (p + "used_chunks", String(e.count)), (p + "free_chunks", String(pages * perPage - e.count)),
                    (p + "free_chunks_end", "0"), (p + "get_hits", "0"), (p + "cmd_set", "0"), (p + "delete_hits", "0"),
                    (p + "incr_hits", "0"), (p + "decr_hits", "0"), (p + "cas_hits", "0"), (p + "cas_badval", "0"),
                    (p + "touch_hits", "0")]
        }
        let used = (store.pool.segmentCount - store.pool.freeSegments) * store.pool.segmentSize
        out += [("active_slabs", String(classes.count)), ("total_malloced", String(used))]
        return out
    }

    /// `stats conns`: one row per open connection is memcached's; flexkvs reports the
    /// counts (its connections live in the workers' tables).
    func connectionStats() -> [(String, String)] {
        [("curr_connections", String(transport().currentConnections)), ("max_connections", String(maxConnections))]
    }

    static let cacheDumpLimit = 2 << 20

    /// `stats cachedump <class> <limit>`: up to `limit` (0: all) items of a class.
    func cacheDump(into s: Session, sizeClass: Int, limit: Int) {
        // As memcached: at most `limit` items (0: all), and at most 2 MB of lines.
        var left = limit <= 0 ? Int.max : limit
        let end = s.output.count + Self.cacheDumpLimit
        let cas = store.configuration.casEnabled
        for p in store.partitions where left > 0 {
            p.withLock { p in
                p.forEachItem { it in
                    let size = SizeClasses.memcachedSize(keyLength: it.keyLength, flags: it.flags, valueLength: it.valueLength, cas: cas)
                    guard left > 0, s.output.count < end, SizeClasses.classID(size: size) == sizeClass else { return }
                    left -= 1
                    s.write("ITEM "); s.write(it.key); s.write(" [")
                    s.write(number: it.valueLength); s.write(" b; ")
                    s.write(number: it.expiry == 0 ? 0 : UInt64(store.clock.unixTime(atServerSeconds: it.expiry)))
                    s.write(" s]\r\n")
                }
            }
        }
        s.write("END\r\n")
    }

    /// `lru_crawler metadump all|<classes>`: a line per item, in memcached's format
    /// (memcached-tool `dump`, libmemcached's `memdump`).
    func metadump(into s: Session, classes: String) {
        var wanted: Set<Int>? = nil
        if classes != "all" {
            let ids = classes.split(separator: ",").map { Int($0) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil && $0! >= 1 && $0! <= SizeClasses.sizes.count }) else {
                s.write("BADCLASS invalid class id\r\n")
                return
            }
            wanted = Set(ids.map { $0! })
        }
        let cas = store.configuration.casEnabled
        let clock = store.clock
        for p in store.partitions {
            p.withLock { p in
                p.forEachItem { it in
                    let size = SizeClasses.memcachedSize(keyLength: it.keyLength, flags: it.flags, valueLength: it.valueLength, cas: cas)
                    let c = SizeClasses.classID(size: size)
                    if let wanted, !wanted.contains(c) { return }
                    s.write("key=")
                    for byte in it.key { Self.writeURLEncoded(byte, to: s) }
                    s.write(" exp=")
                    if it.expiry == 0 { s.write("-1") } else { s.write(number: UInt64(clock.unixTime(atServerSeconds: it.expiry))) }
                    s.write(" la="); s.write(number: UInt64(clock.unixTime(atServerNanos: it.storedAt)))
                    s.write(" cas="); s.write(number: it.cas)
                    s.write(it.marks.contains(.fetched) ? " fetch=yes cls=" : " fetch=no cls="); s.write(number: c)
                    s.write(" size="); s.write(number: size)
                    s.write("\n")
                }
            }
        }
        s.write("END\r\n")
    }

    /// One key byte as memcached's metadump writes it (RFC 3986 unreserved bytes as
    /// they are, the rest as %XX).
    static func writeURLEncoded(_ byte: UInt8, to s: Session) {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A, 0x2D, 0x2E, 0x5F, 0x7E: s.output.append(byte)
        default:
            let hex = Array("0123456789ABCDEF".utf8)
            s.output.append(0x25)
            s.output.append(hex[Int(byte >> 4)])
            s.output.append(hex[Int(byte & 0xF)])
        }
    }

    /// flexkvs's log segments (`stats segments`).
    func segmentStats() -> [(String, String)] {
        var out: [(String, String)] = [
            ("segment_size", String(store.pool.segmentSize)), ("segments_reserved", String(store.pool.segmentCount)),
            ("segments_limit", String(store.pool.segmentLimit)), ("segments_free", String(max(0, store.pool.segmentLimit - (store.pool.segmentCount - store.pool.freeSegments)))),
            ("item_header_bytes", String(ItemView.headerSize))]
        for p in store.partitions {
            let prefix = "partition:\(p.index):"
            out += [(prefix + "items", String(p.stats[.currItems])), (prefix + "evicted", String(p.stats[.evictions])),
                    (prefix + "reclaimed", String(p.stats[.reclaimed])), (prefix + "segments", String(p.segmentsHeld))]
        }
        return out
    }
}
