package main

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// parsers are the commands' command-line parsers, which only parse.
var parsers = map[string]func([]string) error{
	"record":   func(a []string) error { _, err := parseRecord(a, io.Discard); return err },
	"top":      func(a []string) error { _, err := parseTop(a, io.Discard); return err },
	"selftest": func(a []string) error { _, err := parseSelftest(a, io.Discard); return err },
	"serve":    func(a []string) error { _, err := parseServe(a, io.Discard); return err },
	"report":   func(a []string) error { _, err := parseReport(a, io.Discard); return err },
	"convert":  func(a []string) error { _, err := parseConvert(a, io.Discard); return err },
	"tags": func(a []string) error {
		_, err := parseTags(a, io.Discard, "linux", func(string) string { return "" })
		return err
	},
}

// TestDocsOptions: every option a command's help lists (which the man page
// and the completions are made from) is one its parser knows, and each
// command of the main help has its help.
func TestDocsOptions(t *testing.T) {
	docs := commandDocs()
	if len(docs) < 10 {
		t.Fatalf("%d commands found in the main help", len(docs))
	}
	for _, d := range docs {
		if d.usage == "" && d.name != "help" {
			t.Errorf("%s: no help text", d.name)
		}
		parse := parsers[d.name]
		if parse == nil {
			continue
		}
		opts := optionsOf(d.usage)
		if len(opts) < 2 {
			t.Errorf("%s: options found in its help: %v", d.name, opts)
		}
		for _, o := range opts {
			if err := parse([]string{o + "=x"}); err != nil && strings.Contains(err.Error(), "unknown option") {
				t.Errorf("%s --help lists %s, which it does not know", d.name, o)
			}
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		code, out, errOut := runInProcess("completion", shell)
		if code != exitOK {
			t.Fatalf("%s: exit %d %s", shell, code, errOut)
		}
		for _, d := range commandDocs() {
			if !strings.Contains(out, d.name) {
				t.Errorf("%s completion lacks the command %s", shell, d.name)
			}
		}
		for _, o := range optionsOf(recordUsage) {
			if !strings.Contains(out, " "+o+" ") && !strings.Contains(out, "'"+o+"'") && !strings.Contains(out, "\""+o+" ") {
				t.Errorf("%s completion lacks record's %s", shell, o)
			}
		}
		if sh, err := exec.LookPath(shell); err == nil {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(out)
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n: %v\n%s", shell, err, msg)
			}
		}
	}
	if code, _, errOut := runInProcess("completion", "fish"); code != exitUsage || !strings.Contains(errOut, "bash or zsh") {
		t.Errorf("fish: exit %d %q", code, errOut)
	}
}

// TestManPage: the page has every command's help, uses only the macros it
// means to, and groff (where installed) renders it without a warning.
func TestManPage(t *testing.T) {
	code, page, _ := runInProcess("man")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, d := range commandDocs() {
		if d.usage != "" && !strings.Contains(page, ".SS "+d.name+"\n") {
			t.Errorf("no section for %s", d.name)
		}
	}
	known := map[string]bool{".TH": true, ".SH": true, ".SS": true, ".PP": true, ".nf": true, ".fi": true, ".B": true, ".I": true, ".BR": true}
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			if m, _, _ := strings.Cut(l, " "); !known[m] {
				t.Errorf("unexpected roff request %q", l)
			}
		}
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(page)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("groff: %v\n%s", err, stderr.String())
		}
	}
}
