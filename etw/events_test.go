package etw

import (
	"errors"
	"testing"
)

func TestGUIDString(t *testing.T) {
	for _, tc := range []struct {
		name string
		guid GUID
		want string
	}{
		{"PoolTrace", PoolTraceGUID, "{0268a8b6-74fd-4302-9dd0-6e8f1795c0cf}"},
		{"StackWalk", StackWalkGUID, "{def2fe46-7bd6-4b80-bd94-f57fe20d0ce3}"},
		{"Image", ImageGUID, "{2cb15d1d-5fc1-11d2-abe1-00a0c911f518}"},
		{"Process", ProcessGUID, "{3d6fa8d0-fe05-11d0-9dda-00c04fd7ba7c}"},
		{"zero", GUID{}, "{00000000-0000-0000-0000-000000000000}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.guid.String(); got != tc.want {
				t.Errorf("String() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPerfPoolGroupMask(t *testing.T) {
	// PERFINFO_GROUPMASK index in the top 3 bits, the flag in the rest.
	if idx, bit := PerfPoolGroupMask>>29, PerfPoolGroupMask&0x1fffffff; idx != 1 || bit != 0x40 {
		t.Errorf("PERF_POOL = Masks[%d] |= %#x, want Masks[1] |= 0x40", idx, bit)
	}
}

func TestPoolTypeName(t *testing.T) {
	for _, tc := range []struct {
		typ  uint32
		want string
	}{
		{0, "NonPaged"},
		{1, "Paged"},
		{4, "NonPagedCacheAligned"},
		{32, "NonPagedSession"},
		{33, "PagedSession"},
		{512, "NonPagedNx"},
		{516, "NonPagedNxCacheAligned"},
		{544, "NonPagedSessionNx"},
		{7, "PoolType(0x7)"},
		{0x80000000, "PoolType(0x80000000)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := PoolTypeName(tc.typ); got != tc.want {
				t.Errorf("PoolTypeName(%d) = %q, want %q", tc.typ, got, tc.want)
			}
		})
	}
}

func TestTagString(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes [4]byte // in memory order
		want  string
	}{
		{"printable", [4]byte{'N', 't', 'f', 'x'}, "Ntfx"},
		{"trailing spaces kept", [4]byte{'C', 'c', ' ', ' '}, "Cc  "},
		{"digits and space", [4]byte{'D', 'h', ' ', '0'}, "Dh 0"},
		{"nul bytes", [4]byte{'A', 'b', 0, 0}, `Ab\x00\x00`},
		{"high bit (PROTECTED_POOL)", [4]byte{'F', 'i', 'l', 'e' | 0x80}, `Fil\xe5`},
		{"backslash escaped", [4]byte{'a', '\\', 'b', 'c'}, `a\x5cbc`},
		{"control", [4]byte{0x7f, 0x01, 'x', 'y'}, `\x7f\x01xy`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := uint32(tc.bytes[0]) | uint32(tc.bytes[1])<<8 | uint32(tc.bytes[2])<<16 | uint32(tc.bytes[3])<<24
			got := TagString(v)
			if got != tc.want {
				t.Errorf("TagString(%#x) = %q, want %q", v, got, tc.want)
			}
			if back := TagValue(got); back != v {
				t.Errorf("TagValue(%q) = %#x, want %#x (round trip)", got, back, v)
			}
		})
	}
}

func TestTagValue(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		want uint32
	}{
		{"Ntfx", 'N' | 't'<<8 | 'f'<<16 | 'x'<<24},
		{"Cc", 'C' | 'c'<<8 | ' '<<16 | ' '<<24},
		{"", ' ' | ' '<<8 | ' '<<16 | ' '<<24},
		{"Toolong", 'T' | 'o'<<8 | 'o'<<16 | 'l'<<24},
		{`Ab\x00\x01`, 'A' | 'b'<<8 | 0<<16 | 1<<24},
		{`a\xzz`, 'a' | '\\'<<8 | 'x'<<16 | 'z'<<24}, // malformed escape taken literally
	} {
		t.Run(tc.tag, func(t *testing.T) {
			if got := TagValue(tc.tag); got != tc.want {
				t.Errorf("TagValue(%q) = %#x, want %#x", tc.tag, got, tc.want)
			}
		})
	}
}

func TestParseTag(t *testing.T) {
	for _, tc := range []struct {
		tag     string
		want    uint32
		wantErr bool
	}{
		{tag: "Leak", want: 'L' | 'e'<<8 | 'a'<<16 | 'k'<<24},
		{tag: "Irp", want: 'I' | 'r'<<8 | 'p'<<16 | ' '<<24},
		{tag: `\x41BCD`, want: 'A' | 'B'<<8 | 'C'<<16 | 'D'<<24},
		{tag: "", wantErr: true},
		{tag: "Leaks", wantErr: true},
		{tag: `Le\xk`, wantErr: true},
		{tag: `\`, wantErr: true},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			got, err := ParseTag(tc.tag)
			if tc.wantErr {
				if !errors.Is(err, ErrBadTag) {
					t.Fatalf("ParseTag(%q) error = %v, want ErrBadTag", tc.tag, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseTag(%q) = %#x, %v; want %#x", tc.tag, got, err, tc.want)
			}
		})
	}
}

func TestCheckTags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tags    []string
		wantErr bool
	}{
		{"none", nil, false},
		{"four", []string{"a", "b", "c", "d"}, false},
		{"five", []string{"a", "b", "c", "d", "e"}, true},
		{"bad one", []string{"Leak", "toolong"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTags(tc.tags)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrBadTag)) {
				t.Errorf("CheckTags(%q) = %v, want error %v", tc.tags, err, tc.wantErr)
			}
		})
	}
}
