package bpf

import "testing"

// TestBackupNames: a backup program is found from its primary and back, in
// every naming the plans use (raw_tp, tp_btf keyed by event, fentry).
func TestBackupNames(t *testing.T) {
	p := &plan{progs: []progLoad{
		{key: "kt_kfree"}, {key: "kt_kfree_b"},
		{key: "kt_cache_free_na@kmem_cache_free"}, {key: "kt_cache_free_na_b@kmem_cache_free"},
		{key: "kt_cache_alloc"},
	}}
	for _, c := range []struct {
		key, primary string
		role         progRole
	}{
		{"kt_kfree", "", rolePrimary},
		{"kt_kfree_b", "kt_kfree", roleBackup},
		{"kt_cache_free_na@kmem_cache_free", "", rolePrimary},
		{"kt_cache_free_na_b@kmem_cache_free", "kt_cache_free_na@kmem_cache_free", roleBackup},
		{"kt_cache_alloc", "", roleAlone},
	} {
		if got := p.role(c.key); got != c.role {
			t.Errorf("role(%s) = %v, want %v", c.key, got, c.role)
		}
		if c.role == roleBackup {
			if got := p.primaryOf(c.key); got != c.primary {
				t.Errorf("primaryOf(%s) = %s, want %s", c.key, got, c.primary)
			}
		}
	}
}
