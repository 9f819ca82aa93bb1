// SPDX-License-Identifier: GPL-2.0
// brink's system-call tracer, in the kernel: for each traced call of a process in one
// cgroup, an ENTER record (its arguments, the strings and structures it reads), then at
// its return a CALL record (result, completion order, user registers and a copy of the
// top of the user stack) and DATA records (the bytes a write wrote). The record layouts
// are mirrored in `src/events.rs`; what each system call captures is set per call
// number from user space (`src/syscalls.rs`), so this program knows no call by name.
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* x86_64's struct pt_regs (the user registers at system-call entry). */
struct user_regs {
    unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

#define NR_MAX 512
#define STR_BYTES 4096
#define BLOB_BYTES 64
#define ARGV_MAX 64
#define STACK_BYTES 8192
#define CHUNK 4096
#define CHUNKS_MAX 256 /* 1 MiB of data per call */
#define IOV_MAX_READ 1024

/* Records are submitted without waking the reader, which polls every few milliseconds:
 * a wakeup per record would cost the workload a context switch per call. A call that
 * may have mapped new code (an exec, an executable mmap) wakes it, so that it reads the
 * process's memory map while the process still runs. */

enum kind { K_ENTER = 1, K_STR = 2, K_BLOB = 3, K_CALL = 4, K_DATA = 5 };

/* What to capture of one call number (user space fills it). */
struct spec {
    __u8 traced;
    __u8 str_args;   /* bit i: argument i is a NUL-terminated string */
    __u8 argv_arg;   /* 1 + index of an argv-style array of strings, or 0 */
    __u8 blob_arg;   /* 1 + index of a structure to copy, or 0 */
    __u8 blob_len;   /* its size, at most BLOB_BYTES */
    __u8 data;       /* 1: buffer in argument 1, length the result; 2: iovec array in 1, count in 2 */
    __u8 filter;     /* 1: fcntl, only the commands below; 2: ioctl, only FICLONE* */
    __u8 u64_ptrs;   /* bit i: argument i points to a 64-bit value (an offset), read at entry */
};

struct pending { __u64 args[6]; __u64 nr; };

struct enter_rec { __u32 kind, tid, tgid, nr; __u64 time_ns; __u64 args[6]; };
struct str_rec { __u32 kind, tid, argi, len; __u8 bytes[STR_BYTES]; };
struct blob_rec { __u32 kind, tid, argi, len; __u8 bytes[BLOB_BYTES]; };
/* A CALL record is its head, followed by the stack when stacks are copied. */
struct call_head {
    __u32 kind, tid, tgid, nr;
    __u64 seq; __s64 ret;
    __u64 ip, sp, bp;
    __u32 stack_len, pad;
};
struct call_rec { struct call_head h; __u8 stack[STACK_BYTES]; };
struct data_rec { __u32 kind, tid; __u64 seq; __u32 off, len; __u8 bytes[CHUNK]; };

const volatile __u64 target_cgroup = 0;
const volatile __u8 want_stacks = 1;
__u64 seq = 0;

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, NR_MAX); __type(key, __u32); __type(value, struct spec); } specs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536); __type(key, __u32); __type(value, struct pending); } pend SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 64 << 20); } events SEC(".maps");
/* [0]: records dropped (ring full), [1]: user reads that failed */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, __u64); } counts SEC(".maps");

static void count(__u32 k)
{
    __u64 *v = bpf_map_lookup_elem(&counts, &k);
    if (v) __sync_fetch_and_add(v, 1);
}

static int wanted_fcntl(__u64 cmd)
{
    /* F_DUPFD, F_SETFD, F_SETFL, F_DUPFD_CLOEXEC: descriptors, close-on-exec, O_APPEND/O_DIRECT */
    return cmd == 0 || cmd == 2 || cmd == 4 || cmd == 1030;
}

static int wanted_ioctl(__u64 cmd)
{
    return cmd == 0x40049409 /* FICLONE */ || cmd == 0x4020940d /* FICLONERANGE */;
}

static void emit_str(__u32 tid, __u32 argi, __u64 ptr)
{
    struct str_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { count(0); return; }
    r->kind = K_STR; r->tid = tid; r->argi = argi;
    long n = bpf_probe_read_user_str(r->bytes, STR_BYTES, (void *)ptr);
    if (n < 0) { count(1); n = 0; r->argi |= 0x80000000; }
    r->len = n;
    bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

struct argv_ctx { __u32 tid; __u64 base; };

static long argv_one(__u32 i, struct argv_ctx *c)
{
    __u64 p = 0;
    if (bpf_probe_read_user(&p, sizeof(p), (void *)(c->base + i * 8)) || !p) return 1;
    emit_str(c->tid, 16 + i, p);
    return 0;
}

static void emit_blob(__u32 tid, __u32 argi, __u64 ptr, __u32 len)
{
    struct blob_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { count(0); return; }
    r->kind = K_BLOB; r->tid = tid; r->argi = argi; r->len = len;
    if (bpf_probe_read_user(r->bytes, len & (BLOB_BYTES - 1) ? len & (BLOB_BYTES - 1) : BLOB_BYTES, (void *)ptr)) {
        count(1); r->len = 0;
    }
    bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* Argument `i` (0..5) of a pending call; a switch, as the verifier allows no computed
 * index into the stack. */
static __u64 arg_at(const struct pending *p, __u32 i)
{
    switch (i) {
    case 0: return p->args[0];
    case 1: return p->args[1];
    case 2: return p->args[2];
    case 3: return p->args[3];
    case 4: return p->args[4];
    default: return p->args[5];
    }
}

static void emit_strings(__u32 tid, const struct pending *p, __u8 strs)
{
    for (int i = 0; i < 6; i++)
        if (strs & (1 << i)) emit_str(tid, i, arg_at(p, i));
}

SEC("raw_tp/sys_enter")
int on_enter(struct bpf_raw_tracepoint_args *ctx)
{
    if (bpf_get_current_cgroup_id() != target_cgroup) return 0;
    __u32 nr = (__u32)ctx->args[1];
    if (nr >= NR_MAX) return 0;
    struct spec *s = bpf_map_lookup_elem(&specs, &nr);
    if (!s || !s->traced) return 0;
    struct user_regs regs;
    if (bpf_probe_read_kernel(&regs, sizeof(regs), (void *)ctx->args[0])) return 0;
    struct pending p = { .args = { regs.di, regs.si, regs.dx, regs.r10, regs.r8, regs.r9 }, .nr = nr };
    if (s->filter == 1 && !wanted_fcntl(p.args[1])) return 0;
    if (s->filter == 2 && !wanted_ioctl(p.args[1])) return 0;
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)id;
    struct enter_rec *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) { count(0); return 0; }
    e->kind = K_ENTER; e->tid = tid; e->tgid = id >> 32; e->nr = nr; e->time_ns = bpf_ktime_get_boot_ns();
    for (int i = 0; i < 6; i++) e->args[i] = p.args[i];
    bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
    /* A path is read at return, when the kernel has read it and so made its page
     * resident (a tracepoint cannot fault a page in); an exec's at entry, as its
     * memory is gone at return. */
    __u32 argv = s->argv_arg, blob = s->blob_arg, blob_len = s->blob_len;
    if (argv) {
        emit_strings(tid, &p, s->str_args);
        struct argv_ctx c = { .tid = tid, .base = arg_at(&p, argv - 1) };
        bpf_loop(ARGV_MAX, argv_one, &c, 0);
    }
    /* FICLONE's third argument is a descriptor, FICLONERANGE's a structure. */
    if (blob && !(s->filter == 2 && p.args[1] == 0x40049409))
        emit_blob(tid, blob - 1, arg_at(&p, blob - 1), blob_len);
    __u8 ptrs = s->u64_ptrs;
    for (int i = 0; i < 6; i++)
        if ((ptrs & (1 << i)) && p.args[i]) emit_blob(tid, i, p.args[i], 8);
    bpf_map_update_elem(&pend, &tid, &p, BPF_ANY);
    return 0;
}

/* The progress of one call's data copy. It lives in a per-CPU map, not on the stack:
 * values the verifier cannot know keep its walk of the loop short. */
struct data_ctx {
    __u32 tid; __u32 vec;
    __u64 seq;
    __u64 left;           /* bytes still to copy */
    __u64 off;            /* bytes copied so far */
    __u64 buf;            /* plain buffer, or the current iovec's base */
    __u64 buf_left;       /* bytes left in the current iovec */
    __u64 iov, iov_left;  /* next iovec, iovecs left */
};

struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct data_ctx); } scratch SEC(".maps");

static long data_chunk(__u32 i, void *unused)
{
    __u32 zero = 0;
    struct data_ctx *c = bpf_map_lookup_elem(&scratch, &zero);
    if (!c || !c->left) return 1;
    if (c->vec && !c->buf_left) {
        __u64 v[2];
        if (!c->iov_left || bpf_probe_read_user(v, sizeof(v), (void *)c->iov)) return 1;
        c->iov += 16; c->iov_left--;
        c->buf = v[0]; c->buf_left = v[1];
        return 0; /* an empty iovec costs an iteration */
    }
    __u64 n = c->left;
    if (c->vec && n > c->buf_left) n = c->buf_left;
    if (n > CHUNK) n = CHUNK;
    struct data_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { count(0); return 1; }
    r->kind = K_DATA; r->tid = c->tid; r->seq = c->seq; r->off = c->off; r->len = n;
    if (bpf_probe_read_user(r->bytes, n & (CHUNK - 1) ? n & (CHUNK - 1) : CHUNK, (void *)c->buf)) {
        count(1); r->len |= 0x80000000;
    }
    bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
    c->buf += n; c->off += n; c->left -= n;
    if (c->vec) c->buf_left -= n;
    return 0;
}

/* The top of the user stack: as much of STACK_BYTES as is mapped (a thread near the
 * top of its stack has less above its stack pointer). */
static __u32 copy_stack(__u8 *dst, __u64 sp)
{
    if (!bpf_probe_read_user(dst, STACK_BYTES, (void *)sp)) return STACK_BYTES;
    if (!bpf_probe_read_user(dst, STACK_BYTES / 2, (void *)sp)) return STACK_BYTES / 2;
    if (!bpf_probe_read_user(dst, STACK_BYTES / 4, (void *)sp)) return STACK_BYTES / 4;
    if (!bpf_probe_read_user(dst, STACK_BYTES / 8, (void *)sp)) return STACK_BYTES / 8;
    return 0;
}

/* `pad` of a CALL record: 1 when the call may have changed the process's executable
 * mappings (an exec, an executable mmap), so user space reads its memory map again. */
static __always_inline void fill_head(struct call_head *h, const struct user_regs *regs, __u32 tid, __u32 tgid,
                                      __u64 nr, __u64 s, long ret, __u32 remap)
{
    h->kind = K_CALL; h->tid = tid; h->tgid = tgid; h->nr = nr; h->seq = s; h->ret = ret;
    h->ip = regs->ip; h->sp = regs->sp; h->bp = regs->bp; h->stack_len = 0; h->pad = remap;
}

static __always_inline void emit_call(void *uregs, __u32 tid, __u32 tgid, __u64 nr, __u64 s, long ret, __u32 remap)
{
    struct user_regs regs;
    if (bpf_probe_read_kernel(&regs, sizeof(regs), uregs)) { regs.ip = regs.sp = regs.bp = 0; }
    __u64 wake = remap ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
    if (!want_stacks) {
        struct call_head *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);
        if (!h) { count(0); return; }
        fill_head(h, &regs, tid, tgid, nr, s, ret, remap);
        bpf_ringbuf_submit(h, wake);
        return;
    }
    struct call_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
    if (!r) { count(0); return; }
    fill_head(&r->h, &regs, tid, tgid, nr, s, ret, remap);
    r->h.stack_len = regs.sp ? copy_stack(r->stack, regs.sp) : 0;
    bpf_ringbuf_submit(r, wake);
}

SEC("raw_tp/sys_exit")
int on_exit(struct bpf_raw_tracepoint_args *ctx)
{
    if (bpf_get_current_cgroup_id() != target_cgroup) return 0;
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)id;
    struct pending *p = bpf_map_lookup_elem(&pend, &tid);
    if (!p) return 0;
    __u64 nr = p->nr;
    long ret = (long)ctx->args[1];
    __u64 s = __sync_fetch_and_add(&seq, 1);
    __u32 k = nr, zero = 0;
    struct spec *sp = bpf_map_lookup_elem(&specs, &k);
    struct data_ctx *c = bpf_map_lookup_elem(&scratch, &zero);
    if (c) {
        c->tid = tid; c->seq = s; c->left = 0; c->off = 0; c->vec = 0; c->buf_left = 0; c->iov_left = 0;
        if (sp && sp->data && ret > 0) {
            c->left = ret > CHUNKS_MAX * CHUNK ? CHUNKS_MAX * CHUNK : ret;
            c->vec = sp->data == 2;
            c->buf = p->args[1]; c->iov = p->args[1];
            c->iov_left = p->args[2] > IOV_MAX_READ ? IOV_MAX_READ : p->args[2];
        }
    }
    if (sp && !sp->argv_arg) emit_strings(tid, p, sp->str_args);
    __u32 remap = nr == 59 || nr == 322 || (nr == 9 && (p->args[2] & 4 /* PROT_EXEC */));
    bpf_map_delete_elem(&pend, &tid);
    emit_call((void *)ctx->args[0], tid, id >> 32, nr, s, ret, remap);
    if (c && c->left) bpf_loop(CHUNKS_MAX + IOV_MAX_READ, data_chunk, NULL, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
