package bpf

import "testing"

func TestIsAllocatorFrame(t *testing.T) {
	for name, want := range map[string]bool{
		"__kmalloc_noprof":                   true,
		"__kmalloc_node_track_caller_noprof": true,
		"kmalloc_trace_noprof":               true,
		"kmem_cache_alloc_lru_noprof":        true,
		"__kmem_cache_alloc_node":            true,
		"kvmalloc_node_noprof":               true,
		"kmemdup_noprof":                     true,
		"kstrdup_const":                      true,
		"__alloc_pages_noprof":               true,
		"alloc_pages_mpol_noprof":            true,
		"__alloc_frozen_pages_noprof":        true,
		"__folio_alloc_noprof":               true,
		"___slab_alloc":                      true,
		"pcpu_alloc_noprof":                  true,
		"__get_free_pages_noprof":            true,
		"alloc_foo":                          false,
		"do_syscall_64":                      false,
		"nft_trans_alloc_gfp":                false,
		"skb_kmalloc":                        false,
		"ExAllocatePool2":                    false,
		"":                                   false,
	} {
		if got := IsAllocatorFrame(name); got != want {
			t.Errorf("IsAllocatorFrame(%q) = %v, want %v", name, got, want)
		}
	}
}
