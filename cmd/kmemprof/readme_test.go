package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/kmemprof/kmemprof/tracer"
)

// readme is the README, whose examples and tables the tests below hold to
// the code so that they cannot drift.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeRecordFlags: every option of record's table in the README is one
// record knows, and every option record's help lists is in the table.
func TestReadmeRecordFlags(t *testing.T) {
	text := readme(t)
	start := strings.Index(text, "| flag | default | meaning |")
	if start < 0 {
		t.Fatal("README has no record flag table")
	}
	table := text[start:]
	table = table[:strings.Index(table, "\n\n")]
	inTable := map[string]bool{}
	for _, row := range strings.Split(table, "\n")[2:] {
		cells := strings.Split(row, "|")
		if len(cells) < 2 {
			continue
		}
		for _, m := range regexp.MustCompile("`(-{1,2}[a-z][a-z-]*)").FindAllStringSubmatch(cells[1], -1) {
			inTable[strings.TrimLeft(m[1], "-")] = true
		}
	}
	if len(inTable) < 15 {
		t.Fatalf("found %d options in the README's table", len(inTable))
	}
	for name := range inTable {
		_, err := parseRecord([]string{optionName(name) + "=x"}, &strings.Builder{})
		if err != nil && strings.Contains(err.Error(), "unknown option") {
			t.Errorf("the README's record table names %s, which record does not know", optionName(name))
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z][a-z-]*)`).FindAllStringSubmatch(recordUsage, -1) {
		// Windows' options are in the README's Windows section.
		if name := m[1]; !inTable[name] && name != "help" && !strings.Contains(text, "`--"+name) {
			t.Errorf("record --help lists --%s, the README does not", name)
		}
	}
}

// TestReadmeLabels: every label the profile carries is named in the README
// and in record --help.
func TestReadmeLabels(t *testing.T) {
	text := readme(t)
	for _, l := range []string{
		tracer.LabelKind, tracer.LabelCache, tracer.LabelComm, tracer.LabelPID, tracer.LabelCgroup,
		tracer.LabelMemcg, tracer.LabelMemcgRemoved, tracer.LabelContainer, tracer.LabelPod,
		tracer.LabelAccounted, tracer.LabelAllocator, tracer.LabelReclaim, tracer.LabelOwner,
		tracer.LabelUntraced, tracer.LabelMerged, tracer.LabelOrder, tracer.LabelGFP, tracer.LabelMigrate,
		tracer.LabelBytes, tracer.LabelRequested, tracer.LabelSteadiness,
	} {
		if !strings.Contains(text, "`"+l+"`") {
			t.Errorf("the README does not name the label %s", l)
		}
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(l) + `\b`).MatchString(recordUsage) {
			t.Errorf("record --help does not name the label %s", l)
		}
	}
}

// TestReadmeSummaryColumns: the README's summary examples have the columns
// the summary prints.
func TestReadmeSummaryColumns(t *testing.T) {
	text := readme(t)
	heads := regexp.MustCompile(`(?m)^ *IN-USE .*$`).FindAllString(text, -1)
	if len(heads) == 0 {
		t.Fatal("no summary example in the README")
	}
	for _, h := range heads {
		if strings.Contains(h, "MEMCG") { // the removed memory cgroups' table
			continue
		}
		if got := strings.Fields(h); strings.Join(got, " ") != "IN-USE OBJECTS % REQ% CACHE KIND WHERE" &&
			strings.Join(got, " ") != "GROWTH STEADY IN-USE OBJECTS % REQ% CACHE KIND WHERE" {
			t.Errorf("a README summary example has the columns %q", strings.Join(got, " "))
		}
	}
}
