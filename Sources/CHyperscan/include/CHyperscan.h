/// Hyperscan (Debian's libhyperscan5, or Vectorscan) as a multi-literal matcher, loaded
/// with dlopen at first use: a flexids built without the headers, or run where the
/// library is absent, falls back to its own automaton (`chs_available` says which).
/// Thin: each call is one Hyperscan call; databases and scratch are opaque pointers
/// owned by the Swift wrapper (FlexIDS/HyperscanMatcher.swift).
#ifndef CHYPERSCAN_H
#define CHYPERSCAN_H

#include <stddef.h>
#include <stdint.h>

/// Called for each pattern id found (once per scan: the patterns are single-match);
/// return nonzero to stop the scan. Same shape as Hyperscan's match_event_handler.
typedef int (*chs_match_handler)(unsigned int id, unsigned long long from, unsigned long long to,
                                 unsigned int flags, void *context);

/// 1 if Hyperscan can be used; else 0, and `chs_unavailable_reason` says why.
int chs_available(void);
const char *chs_unavailable_reason(void);

/// Compiles `count` literals (pattern i has id i), case-insensitive, single-match, for
/// block-mode scanning (`streaming` 0) or streaming mode. NULL on failure, with
/// Hyperscan's message in `error`.
void *chs_compile_literals(const char *const *patterns, const size_t *lengths, unsigned int count, int streaming,
                           char *error, size_t error_capacity);
/// Grows `*scratch` (NULL: allocates it) so that it serves `database` too. 0 on success.
int chs_grow_scratch(const void *database, void **scratch);
/// Scans `data` in block mode; 0 on success (also when the handler stopped the scan).
int chs_scan(const void *database, const void *data, unsigned int length, void *scratch,
             chs_match_handler handler, void *context);
/// Bytes of the compiled database, and of a scratch.
size_t chs_database_size(const void *database);
size_t chs_scratch_size(const void *scratch);
/// A database as bytes (free with `free`), and back; what the on-disk cache holds.
int chs_serialize(const void *database, char **bytes, size_t *length);
void *chs_deserialize(const char *bytes, size_t length);
/// Hyperscan's version text ("" when unavailable): part of a cached database's key.
const char *chs_version(void);
void chs_free_database(void *database);
void chs_free_scratch(void *scratch);
/// Streaming mode: the bytes of one stream's state; a stream (NULL on failure); a scan
/// of its next bytes (0 on success); its close, which reports what ends there.
size_t chs_stream_size(const void *database);
void *chs_open_stream(const void *database);
int chs_scan_stream(void *stream, const void *data, unsigned int length, void *scratch,
                    chs_match_handler handler, void *context);
void chs_close_stream(void *stream, void *scratch, chs_match_handler handler, void *context);

#endif
