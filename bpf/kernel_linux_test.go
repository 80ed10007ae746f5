package bpf

import (
	"strings"
	"testing"
)

// TestLockdownMode reads the mode from securityfs, or else the command line,
// and explains only the mode that refuses kmemprof.
func TestLockdownMode(t *testing.T) {
	for _, tc := range []struct {
		securityfs, cmdline, want string
	}{
		{"[none] integrity confidentiality\n", "", "none"},
		{"none integrity [confidentiality]\n", "", "confidentiality"},
		{"none [integrity] confidentiality\n", "lockdown=confidentiality", "integrity"},
		{"", "BOOT_IMAGE=/vmlinuz root=/dev/vda lockdown=confidentiality quiet", "confidentiality"},
		{"", "root=/dev/vda console=ttyS0", ""},
	} {
		if got := lockdownMode(tc.securityfs, tc.cmdline); got != tc.want {
			t.Errorf("lockdownMode(%q, %q) = %q, want %q", tc.securityfs, tc.cmdline, got, tc.want)
		}
	}
	for _, m := range []string{"", "none", "integrity"} {
		if why := lockdownRefusal(m); why != "" {
			t.Errorf("lockdown %q explained as a refusal: %s", m, why)
		}
	}
	if why := lockdownRefusal("confidentiality"); !strings.Contains(why, "lockdown=confidentiality") || !strings.Contains(why, "lockdown=integrity") {
		t.Errorf("confidentiality: %q", why)
	}
}
