#include "CBPF.h"
#include <errno.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

int cbpf_load(const void *bytes, size_t size, cbpf_attachment *out) {
    out->object = NULL;
    out->link = NULL;
    out->mode = 0;
    struct bpf_object *object = bpf_object__open_mem(bytes, size, NULL);
    if (!object) return -errno;
    int rc = bpf_object__load(object);
    if (rc != 0) {
        bpf_object__close(object);
        return rc < 0 ? rc : -EINVAL;
    }
    out->object = object;
    return 0;
}

int cbpf_map(const cbpf_attachment *a, const char *name) {
    struct bpf_map *map = bpf_object__find_map_by_name(a->object, name);
    return map ? bpf_map__fd(map) : -ENOENT;
}

int cbpf_attach_xdp(cbpf_attachment *a, const char *name, unsigned ifindex) {
    struct bpf_program *program = bpf_object__find_program_by_name(a->object, name);
    if (!program) return -ENOENT;
    struct bpf_link *link = bpf_program__attach_xdp(program, (int)ifindex);
    if (!link) return -errno;
    a->link = link;
    LIBBPF_OPTS(bpf_xdp_query_opts, query);
    if (bpf_xdp_query((int)ifindex, 0, &query) == 0) {
        a->mode = query.attach_mode == XDP_ATTACHED_DRV ? 1 : query.attach_mode == XDP_ATTACHED_HW ? 3 : 2;
    }
    return 0;
}

void cbpf_detach(cbpf_attachment *a) {
    if (a->link) bpf_link__destroy(a->link);
    a->link = NULL;
}

void cbpf_close(cbpf_attachment *a) {
    cbpf_detach(a);
    if (a->object) bpf_object__close(a->object);
    a->link = NULL;
    a->object = NULL;
}

int cbpf_map_update(int map, const void *key, const void *value) {
    return bpf_map_update_elem(map, key, value, BPF_ANY) == 0 ? 0 : -errno;
}

int cbpf_map_delete(int map, const void *key) {
    return bpf_map_delete_elem(map, key) == 0 ? 0 : -errno;
}

int cbpf_map_lookup(int map, const void *key, void *value) {
    return bpf_map_lookup_elem(map, key, value) == 0 ? 0 : -errno;
}

int cbpf_map_next_key(int map, const void *key, void *next) {
    return bpf_map_get_next_key(map, key, next) == 0 ? 0 : -errno;
}

int cbpf_possible_cpus(void) {
    return libbpf_num_possible_cpus();
}
