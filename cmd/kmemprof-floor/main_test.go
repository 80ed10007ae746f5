package main

import (
	"strings"
	"testing"
)

// TestParse: the two flags, --help (usage on stdout, nothing to run) and a
// bad flag or argument (an error that carries the usage).
func TestParse(t *testing.T) {
	o, err := parse([]string{"--backups", "--walk"}, nil)
	if err != nil || o == nil || !o.backups || !o.walk {
		t.Fatalf("parse(--backups --walk) = %+v, %v", o, err)
	}
	var out strings.Builder
	if o, err := parse([]string{"--help"}, &out); o != nil || err != nil || !strings.Contains(out.String(), "Usage: kmemprof-floor") {
		t.Errorf("--help: %+v, %v, printed %q", o, err, out.String())
	}
	for _, args := range [][]string{{"--bogus"}, {"extra"}} {
		if o, err := parse(args, nil); o != nil || err == nil || !strings.Contains(err.Error(), "Usage:") {
			t.Errorf("parse(%q) = %+v, %v: want an error with the usage", args, o, err)
		}
	}
}
