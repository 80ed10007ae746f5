package tracer

import (
	"errors"
	"strings"
	"testing"
)

// TestWriteReport: lines as given, tables indented by two spaces with the
// first Left columns left-aligned and the rest right-aligned, and a write
// error returned.
func TestWriteReport(t *testing.T) {
	r := Report{
		{Line: "head:"},
		{Table: [][]string{{"Slab", "1 MiB", "+12 KiB"}, {"SUnreclaim", "800 KiB", "-3 B"}}, Left: 1},
		{Line: "  hint: one\n  and two"},
	}
	var b strings.Builder
	if err := WriteReport(&b, r); err != nil {
		t.Fatal(err)
	}
	want := "head:\n" +
		"  Slab          1 MiB  +12 KiB\n" +
		"  SUnreclaim  800 KiB     -3 B\n" +
		"  hint: one\n  and two\n"
	if b.String() != want {
		t.Errorf("WriteReport =\n%q\nwant\n%q", b.String(), want)
	}
	if err := WriteReport(errWriter{}, r); err == nil {
		t.Error("a failed write returned no error")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSignedBytes(t *testing.T) {
	for _, tt := range []struct {
		d    int64
		want string
	}{
		{0, "0 B"},
		{512, "+512 B"},
		{-1536, "-1.5 KiB"},
		{-1 << 63, "-8.0 EiB"},
		{1<<63 - 1, "+8.0 EiB"},
	} {
		if got := SignedBytes(tt.d); got != tt.want {
			t.Errorf("SignedBytes(%d) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
