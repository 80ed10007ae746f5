// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)

/*
 * guard.h: how a free hook's primary and backup programs agree on which of the
 * two handles an event (guard_enter, guard_exit).
 *
 * Depends on: maps.h (free_guards, backups_armed, nested_runs, ROLE_PRIMARY,
 * ROLE_BACKUP, count).
 */

/*
 * Nested frees. From Linux 6.1 the kernel does not run a raw_tp, tp_btf or
 * fentry program on a CPU where that same program is already running: an
 * interrupt that frees (an RCU callback freeing files, dentries or maple
 * nodes, say) while the free program runs in process context would be
 * lost, and the object would look leaked. So each free hook has a second,
 * backup program for the events the kernel did not run the primary for.
 * A second program on a tracepoint costs every event a second dispatch
 * (about 60 ns here, as much as the primary's whole work); with
 * --nested-frees lazy, user space attaches it only once the kernel reports
 * a miss of the primary. Before the first backup is attached, user space
 * sets backups_armed.
 *
 * From then on both programs run for each event, in either order (a
 * tracepoint runs its programs in the order they were attached, a BPF
 * trampoline the other way round), and exactly one handles it. Each keeps
 * a depth on this CPU while it runs. A program that starts while the other
 * one is running below it is the only one the kernel runs for this event:
 * it handles it. Otherwise the first of the two to run claims the event
 * (its key, in the slot of its nesting level) and handles it, and the
 * second finds the claim, clears it and skips. Kernels that do run a
 * program nested in itself (before 6.1) are found out by that depth, and
 * from then on every event goes through the claim.
 */

/*
 * guard_enter starts a free hook's program on an event (see above) and
 * says whether the other program of the hook handles it (*skip). It
 * returns the guard to pass to guard_exit, or NULL when the hook has no
 * backup.
 */
static __always_inline struct free_guard *guard_enter(__u32 hook, __u64 key, const int role, bool *skip)
{
	*skip = false;
	if (!backups_armed)
		return NULL;
	struct free_guard *g = bpf_map_lookup_elem(&free_guards, &hook);
	if (!g)
		return NULL;
	__u32 own = g->depth[role], other = g->depth[role ^ 1];
	if (own)
		nested_runs = 1;
	g->depth[role] = own + 1;
	__u32 l = (own + other) & 3;
	if (other && !nested_runs) {
		/* The kernel skips the other one for this event. Claimed all the same, in case it does not. */
		g->slot[l] = key;
		if (role == ROLE_BACKUP)
			count(C_RESCUED);
		return g;
	}
	if (g->slot[l] == key) {
		g->slot[l] = 0;
		*skip = true;
		/* The backup handled an event the primary saw: not a rescue. */
		if (role == ROLE_PRIMARY)
			count_n(C_RESCUED, (__u64)-1);
		return g;
	}
	g->slot[l] = key;
	if (role == ROLE_BACKUP)
		count(C_RESCUED);
	return g;
}

static __always_inline void guard_exit(struct free_guard *g, const int role)
{
	if (g)
		g->depth[role]--;
}
