package tracer

import (
	"io"
	"strings"
)

// A Report is a section that a backend adds to the terminal summary about
// its host (on Linux, the kernel's own account of its memory over the
// capture): lines and tables, which WriteReport lays out as the summary
// lays out its own. Its content is the backend's; its layout is here.
type Report []ReportBlock

// A ReportBlock is one line (Line, which may hold its own line breaks), or,
// when Table is set, a table indented by two spaces whose first Left
// columns are left-aligned and the others right-aligned.
type ReportBlock struct {
	Line  string
	Table [][]string
	Left  int
}

// WriteReport writes r to w. It returns the first write error.
func WriteReport(w io.Writer, r Report) error {
	var b strings.Builder
	for _, bl := range r {
		if bl.Table != nil {
			writeColumns(&b, bl.Table, bl.Left)
			continue
		}
		b.WriteString(bl.Line + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeColumns writes rows as a table indented by two spaces, the first left
// columns left-aligned and the others right-aligned.
func writeColumns(b *strings.Builder, rows [][]string, left int) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var line string
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-len(c))
			if i < left {
				line += "  " + c + pad
			} else {
				line += "  " + pad + c
			}
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
}
