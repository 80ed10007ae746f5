// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * args.h: reading a program's arguments: tracing contexts (raw_tp, tp_btf,
 * fentry, fexit) by argument index, classic tracepoint records by field offset,
 * kprobe registers.
 *
 * Depends on: maps.h (ctx_direct, typed_ctx, tp_off, tp_size).
 */

/*
 * CTX_WORD loads word n of a tracing context with the offset in the load
 * instruction itself, as the verifier requires: written in C, the loads of a
 * switch over the index are merged into one load from a computed pointer,
 * which it rejects.
 */
#define CTX_WORD(ctx, n)                                                                       \
	({                                                                                     \
		__u64 __v;                                                                     \
		asm volatile("%[v] = *(u64 *)(%[c] + " #n ")" : [v] "=r"(__v) : [c] "r"(ctx)); \
		__v;                                                                           \
	})

/* ctx_arg returns tracing argument i (an index + 1 from arg_idx or fn_alloc). */
static __always_inline __u64 ctx_arg(__u64 *ctx, int i)
{
	switch (i) {
	case 1: return CTX_WORD(ctx, 0);
	case 2: return CTX_WORD(ctx, 8);
	case 3: return CTX_WORD(ctx, 16);
	case 4: return CTX_WORD(ctx, 24);
	case 5: return CTX_WORD(ctx, 32);
	case 6: return CTX_WORD(ctx, 40);
	case 7: return CTX_WORD(ctx, 48);
	case 8: return CTX_WORD(ctx, 56);
	case 9: return CTX_WORD(ctx, 64);
	case 10: return CTX_WORD(ctx, 72);
	case 11: return CTX_WORD(ctx, 80);
	case 12: return CTX_WORD(ctx, 88);
	}
	return 0;
}

/*
 * ctx_ptr returns a pointer argument that does not point to a struct (const
 * void *ptr): loaded directly where the verifier allows it, else copied.
 */
static __always_inline __u64 ctx_ptr(__u64 *ctx, int i)
{
	if (ctx_direct || i == 0)
		return ctx_arg(ctx, i);
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (i - 1));
	return v;
}

/* ctx_copy copies tracing argument i with a helper, whatever its type. */
static __always_inline __u64 ctx_copy(__u64 *ctx, int i)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)ctx + 8 * (i - 1));
	return v;
}

/*
 * page_arg returns a struct page * argument as a number, to key the table
 * with: loaded directly where the context is untyped (raw_tp), copied
 * where the verifier types it (tp_btf) and forbids arithmetic on it.
 */
static __always_inline __u64 page_arg(__u64 *ctx, int i)
{
	if (typed_ctx && i)
		return ctx_copy(ctx, i);
	return ctx_arg(ctx, i);
}

/* tp_field reads a field of a classic tracepoint record; 0 when absent. */
static __always_inline __u64 tp_field(void *ctx, int hook, int f)
{
	__u32 off = tp_off[hook][f];
	__u32 size = tp_size[hook][f];
	__u64 v = 0;
	if (!off || !size || size > 8)
		return 0;
	bpf_probe_read_kernel(&v, size, ctx + off);
	return v;
}

/*
 * kp_arg returns kprobe register argument i (index + 1). The offsets are the
 * architecture's struct pt_regs, which the kernel gives kprobe programs as it
 * is (an ABI); loads with the offset in the instruction, as for CTX_WORD.
 */
#if defined(__TARGET_ARCH_arm64)
#define KP_PARM1 0
#define KP_PARM2 8
#define KP_PARM3 16
#define KP_PARM4 24
#define KP_PARM5 32
#else
#define KP_PARM1 112 /* di */
#define KP_PARM2 104 /* si */
#define KP_PARM3 96  /* dx */
#define KP_PARM4 88  /* cx */
#define KP_PARM5 72  /* r8 */
#endif
#define KP_WORD(ctx, off) CTX_WORD(ctx, off)

static __always_inline __u64 kp_arg(struct pt_regs *ctx, int i)
{
	switch (i) {
	case 1: return KP_WORD(ctx, KP_PARM1);
	case 2: return KP_WORD(ctx, KP_PARM2);
	case 3: return KP_WORD(ctx, KP_PARM3);
	case 4: return KP_WORD(ctx, KP_PARM4);
	case 5: return KP_WORD(ctx, KP_PARM5);
	}
	return 0;
}

/*
 * ret_addr returns a return address as code addresses are: on arm64 with
 * pointer authentication, a return address read from the link register or
 * a frame holds its signature in the bits above the virtual address, which
 * differ with the stack pointer it was signed with; kernel text has them
 * all set. Elsewhere it is the address itself.
 */
static __always_inline __u64 ret_addr(__u64 a)
{
#if defined(__TARGET_ARCH_arm64)
	if (a)
		a |= 0xffff000000000000ULL;
#endif
	return a;
}

/*
 * kp_ret_ip returns, at a kprobe on a function's entry, its return address
 * into its caller: on arm64 the link register (x30, pt_regs offset 240),
 * signature stripped; on x86 the word at the stack pointer. (libbpf's
 * BPF_KPROBE_READ_RET_IP reads memory at the link register on arm64: the
 * instructions there, not an address.)
 */
static __always_inline __u64 kp_ret_ip(struct pt_regs *ctx)
{
#if defined(__TARGET_ARCH_arm64)
	return ret_addr(KP_WORD(ctx, 240));
#else
	__u64 ip = 0;
	bpf_probe_read_kernel(&ip, sizeof(ip), (void *)PT_REGS_SP(ctx));
	return ip;
#endif
}
