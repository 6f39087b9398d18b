#ifndef CBPF_H
#define CBPF_H
/// A thin shim over libbpf (Debian's libbpf-dev) for XDP programs: load an eBPF
/// object from memory, attach one of its programs to an interface through a BPF link,
/// and read and write its maps. libbpf's own headers stay in the .c file: their
/// `struct bpf_insn` clashes with libpcap's classic one. Functions return 0 or a
/// descriptor on success and -errno on failure.
#include <stddef.h>
#include <stdint.h>

/// A loaded object and the link attaching its program (both freed by cbpf_close).
typedef struct cbpf_attachment {
    void *object;
    void *link;
    /// 1 native (driver) XDP, 2 generic (skb) XDP, 3 offloaded to the NIC.
    int mode;
} cbpf_attachment;

/// Loads the object in `bytes` and returns it in `out->object` (no program attached yet).
int cbpf_load(const void *bytes, size_t size, cbpf_attachment *out);
/// The descriptor of the object's map `name`.
int cbpf_map(const cbpf_attachment *a, const char *name);
/// Attaches program `name` to interface `ifindex` (native XDP if the driver has it,
/// else generic) through a link: detached when the link is freed or the process ends.
int cbpf_attach_xdp(cbpf_attachment *a, const char *name, unsigned ifindex);
/// Detaches the program (if attached), keeping the object and its maps.
void cbpf_detach(cbpf_attachment *a);
/// Detaches (if attached) and frees the object.
void cbpf_close(cbpf_attachment *a);

int cbpf_map_update(int map, const void *key, const void *value);
int cbpf_map_delete(int map, const void *key);
int cbpf_map_lookup(int map, const void *key, void *value);
/// The key after `key` (NULL: the first) in `next`; -ENOENT at the end.
int cbpf_map_next_key(int map, const void *key, void *next);
/// How many CPUs a per-CPU map holds a value for.
int cbpf_possible_cpus(void);

#endif
