#include "CHyperscan.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if __has_include(<hs/hs.h>)
#include <hs/hs.h>

/// The Hyperscan entry points this shim uses, resolved once from libhs.so.5.
static struct {
    __typeof__(hs_compile_lit_multi) *compile_lit_multi;
    __typeof__(hs_free_compile_error) *free_compile_error;
    __typeof__(hs_alloc_scratch) *alloc_scratch;
    __typeof__(hs_scan) *scan;
    __typeof__(hs_database_size) *database_size;
    __typeof__(hs_scratch_size) *scratch_size;
    __typeof__(hs_serialize_database) *serialize;
    __typeof__(hs_deserialize_database) *deserialize;
    __typeof__(hs_free_database) *free_database;
    __typeof__(hs_free_scratch) *free_scratch;
    __typeof__(hs_valid_platform) *valid_platform;
    __typeof__(hs_version) *version;
    __typeof__(hs_stream_size) *stream_size;
    __typeof__(hs_open_stream) *open_stream;
    __typeof__(hs_scan_stream) *scan_stream;
    __typeof__(hs_close_stream) *close_stream;
} hs;
static char reason[256] = "not loaded yet";
static int loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen("libhs.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(reason, sizeof reason, "libhs.so.5 not found (apt-get install libhyperscan5): %s", dlerror());
        return;
    }
#define RESOLVE(field, name) \
    if (!(hs.field = (__typeof__(hs.field))dlsym(lib, name))) { \
        snprintf(reason, sizeof reason, "libhs.so.5 has no %s", name); \
        return; \
    }
    RESOLVE(compile_lit_multi, "hs_compile_lit_multi")
    RESOLVE(free_compile_error, "hs_free_compile_error")
    RESOLVE(alloc_scratch, "hs_alloc_scratch")
    RESOLVE(scan, "hs_scan")
    RESOLVE(database_size, "hs_database_size")
    RESOLVE(scratch_size, "hs_scratch_size")
    RESOLVE(serialize, "hs_serialize_database")
    RESOLVE(deserialize, "hs_deserialize_database")
    RESOLVE(free_database, "hs_free_database")
    RESOLVE(free_scratch, "hs_free_scratch")
    RESOLVE(valid_platform, "hs_valid_platform")
    RESOLVE(version, "hs_version")
    RESOLVE(stream_size, "hs_stream_size")
    RESOLVE(open_stream, "hs_open_stream")
    RESOLVE(scan_stream, "hs_scan_stream")
    RESOLVE(close_stream, "hs_close_stream")
#undef RESOLVE
    if (hs.valid_platform() != HS_SUCCESS) {
        snprintf(reason, sizeof reason, "this CPU lacks the instructions Hyperscan needs (SSSE3)");
        return;
    }
    reason[0] = 0;
    loaded = 1;
}

int chs_available(void) {
    pthread_once(&once, load);
    return loaded;
}

const char *chs_unavailable_reason(void) {
    pthread_once(&once, load);
    return reason;
}

void *chs_compile_literals(const char *const *patterns, const size_t *lengths, unsigned int count, int streaming,
                           char *error, size_t error_capacity) {
    if (!chs_available()) {
        snprintf(error, error_capacity, "%s", reason);
        return NULL;
    }
    unsigned int *flags = calloc(count ? count : 1, sizeof *flags);
    unsigned int *ids = calloc(count ? count : 1, sizeof *ids);
    if (!flags || !ids) {
        free(flags);
        free(ids);
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    for (unsigned int i = 0; i < count; i++) {
        flags[i] = HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH;
        ids[i] = i;
    }
    hs_database_t *db = NULL;
    hs_compile_error_t *compile_error = NULL;
    hs_error_t rc = hs.compile_lit_multi(patterns, flags, ids, lengths, count,
                                         streaming ? HS_MODE_STREAM : HS_MODE_BLOCK,
                                         NULL, &db, &compile_error);
    free(flags);
    free(ids);
    if (rc != HS_SUCCESS) {
        snprintf(error, error_capacity, "%s (pattern %d)", compile_error ? compile_error->message : "compile failed",
                 compile_error ? compile_error->expression : -1);
        if (compile_error) hs.free_compile_error(compile_error);
        return NULL;
    }
    return db;
}

int chs_grow_scratch(const void *database, void **scratch) {
    return hs.alloc_scratch(database, (hs_scratch_t **)scratch) == HS_SUCCESS ? 0 : -1;
}

int chs_scan(const void *database, const void *data, unsigned int length, void *scratch,
             chs_match_handler handler, void *context) {
    hs_error_t rc = hs.scan(database, data, length, 0, scratch, handler, context);
    return rc == HS_SUCCESS || rc == HS_SCAN_TERMINATED ? 0 : -1;
}

size_t chs_database_size(const void *database) {
    size_t size = 0;
    return hs.database_size(database, &size) == HS_SUCCESS ? size : 0;
}

size_t chs_scratch_size(const void *scratch) {
    size_t size = 0;
    return scratch && hs.scratch_size(scratch, &size) == HS_SUCCESS ? size : 0;
}

int chs_serialize(const void *database, char **bytes, size_t *length) {
    return hs.serialize(database, bytes, length) == HS_SUCCESS ? 0 : -1;
}

void *chs_deserialize(const char *bytes, size_t length) {
    if (!chs_available()) return NULL;
    hs_database_t *db = NULL;
    return hs.deserialize(bytes, length, &db) == HS_SUCCESS ? db : NULL;
}

void chs_free_database(void *database) {
    if (database) hs.free_database(database);
}

const char *chs_version(void) {
    return chs_available() ? hs.version() : "";
}

void chs_free_scratch(void *scratch) {
    if (scratch) hs.free_scratch(scratch);
}

size_t chs_stream_size(const void *database) {
    size_t size = 0;
    return hs.stream_size(database, &size) == HS_SUCCESS ? size : 0;
}

void *chs_open_stream(const void *database) {
    hs_stream_t *stream = NULL;
    return hs.open_stream(database, 0, &stream) == HS_SUCCESS ? stream : NULL;
}

int chs_scan_stream(void *stream, const void *data, unsigned int length, void *scratch,
                    chs_match_handler handler, void *context) {
    hs_error_t rc = hs.scan_stream(stream, data, length, 0, scratch, handler, context);
    return rc == HS_SUCCESS || rc == HS_SCAN_TERMINATED ? 0 : -1;
}

void chs_close_stream(void *stream, void *scratch, chs_match_handler handler, void *context) {
    if (stream) hs.close_stream(stream, scratch, handler, context);
}

#else  // built without Hyperscan's headers: every call reports it unavailable

int chs_available(void) { return 0; }
const char *chs_unavailable_reason(void) { return "built without Hyperscan's headers (apt-get install libhyperscan-dev)"; }
void *chs_compile_literals(const char *const *p, const size_t *l, unsigned int c, int s, char *error, size_t cap) {
    (void)p; (void)l; (void)c; (void)s;
    snprintf(error, cap, "%s", chs_unavailable_reason());
    return NULL;
}
int chs_grow_scratch(const void *d, void **s) { (void)d; (void)s; return -1; }
int chs_scan(const void *d, const void *data, unsigned int n, void *s, chs_match_handler h, void *c) {
    (void)d; (void)data; (void)n; (void)s; (void)h; (void)c;
    return -1;
}
size_t chs_database_size(const void *d) { (void)d; return 0; }
size_t chs_scratch_size(const void *s) { (void)s; return 0; }
int chs_serialize(const void *d, char **b, size_t *n) { (void)d; (void)b; (void)n; return -1; }
void *chs_deserialize(const char *b, size_t n) { (void)b; (void)n; return NULL; }
void chs_free_database(void *d) { (void)d; }
void chs_free_scratch(void *s) { (void)s; }
const char *chs_version(void) { return ""; }
size_t chs_stream_size(const void *d) { (void)d; return 0; }
void *chs_open_stream(const void *d) { (void)d; return NULL; }
int chs_scan_stream(void *st, const void *data, unsigned int n, void *s, chs_match_handler h, void *c) {
    (void)st; (void)data; (void)n; (void)s; (void)h; (void)c;
    return -1;
}
void chs_close_stream(void *st, void *s, chs_match_handler h, void *c) { (void)st; (void)s; (void)h; (void)c; }

#endif
