package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// The manual page and the shell completions are made from the same help
// texts the commands print, so that they cannot drift from them.

// cmdDoc is one command's documentation.
type cmdDoc struct {
	name, summary, usage string
}

// commandDocs are the commands of mainUsage's list, in its order, with their
// usage texts.
func commandDocs() []cmdDoc {
	usages := map[string]string{
		"record": recordUsage, "top": topUsage, "selftest": selftestUsage, "serve": serveUsage,
		"report": reportUsage, "tags": tagsUsage, "convert": convertUsage, "agent": agentUsage,
		"version": versionUsage, "completion": completionUsage, "man": manUsage,
	}
	var docs []cmdDoc
	_, list, _ := strings.Cut(mainUsage, "\nCommands:\n")
	list, _, _ = strings.Cut(list, "\n\n")
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		docs = append(docs, cmdDoc{name: f[0], summary: strings.Join(f[1:], " "), usage: usages[f[0]]})
	}
	return docs
}

var (
	optionRE      = regexp.MustCompile(`(?:^|[\s,(])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b`)
	optionStartRE = regexp.MustCompile(`^\s+-`)
)

// optionsOf lists the options a usage text's Options section names: its
// lines that start with an option, and options listed on them.
func optionsOf(usage string) []string {
	_, sec, ok := strings.Cut(usage, "\nOptions:\n")
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(sec, "\n") {
		if l != "" && l[0] != ' ' {
			break // the section ends at the next unindented line
		}
		if !optionStartRE.MatchString(l) {
			continue
		}
		// The option column: up to the description (two spaces after it).
		col := strings.TrimSpace(l)
		if i := strings.Index(col, "  "); i > 0 {
			col = col[:i]
		}
		for _, m := range optionRE.FindAllStringSubmatch(" "+col, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				out = append(out, m[1])
			}
		}
	}
	return out
}

const completionUsage = `Usage: kmemprof completion bash|zsh

Prints a shell completion script for kmemprof's commands and options, made
from the same help the commands print. Install it with, for bash:
  kmemprof completion bash | sudo tee /etc/bash_completion.d/kmemprof
and for zsh (a directory in $fpath):
  kmemprof completion zsh > "${fpath[1]}/_kmemprof"
`

const manUsage = `Usage: kmemprof man

Prints kmemprof's manual page (roff, section 8), made from the same help the
commands print:
  kmemprof man | man -l -
  kmemprof man | sudo tee /usr/local/share/man/man8/kmemprof.8
`

// completionScript is the completion script for shell.
func completionScript(shell string) (string, error) {
	docs := commandDocs()
	var names []string
	for _, d := range docs {
		names = append(names, d.name)
	}
	var b strings.Builder
	switch shell {
	case "bash":
		b.WriteString("# bash completion for kmemprof (kmemprof completion bash)\n")
		b.WriteString("_kmemprof() {\n")
		b.WriteString("\tlocal cur cmd opts\n")
		b.WriteString("\tcur=\"${COMP_WORDS[COMP_CWORD]}\"\n")
		b.WriteString("\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n")
		fmt.Fprintf(&b, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(append(names, "--help", "--version"), " "))
		b.WriteString("\t\treturn\n\tfi\n")
		b.WriteString("\tcmd=\"${COMP_WORDS[1]}\"\n")
		b.WriteString("\tcase \"$cmd\" in\n")
		for _, d := range docs {
			opts := optionsOf(d.usage)
			if d.name == "help" {
				opts = names
			}
			if d.name == "completion" {
				opts = []string{"bash", "zsh"}
			}
			fmt.Fprintf(&b, "\t%s) opts=%q ;;\n", d.name, strings.Join(opts, " "))
		}
		b.WriteString("\t*) opts=\"\" ;;\n\tesac\n")
		b.WriteString("\tif [[ \"$cur\" == -* || \"$cmd\" == help || \"$cmd\" == completion ]]; then\n")
		b.WriteString("\t\tCOMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n")
		b.WriteString("\telse\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\tfi\n")
		b.WriteString("}\ncomplete -o filenames -F _kmemprof kmemprof\n")
	case "zsh":
		b.WriteString("#compdef kmemprof\n# zsh completion for kmemprof (kmemprof completion zsh)\n")
		b.WriteString("_kmemprof() {\n\tlocal -a cmds\n\tcmds=(\n")
		for _, d := range docs {
			fmt.Fprintf(&b, "\t\t%s\n", zshQuote(d.name+":"+d.summary))
		}
		b.WriteString("\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' cmds\n\t\treturn\n\tfi\n")
		b.WriteString("\tcase ${words[2]} in\n")
		for _, d := range docs {
			opts := optionsOf(d.usage)
			switch d.name {
			case "help":
				opts = names
			case "completion":
				opts = []string{"bash", "zsh"}
			}
			if len(opts) == 0 {
				continue
			}
			quoted := make([]string, len(opts))
			for i, o := range opts {
				quoted[i] = zshQuote(o)
			}
			fmt.Fprintf(&b, "\t%s) compadd -- %s; _files ;;\n", d.name, strings.Join(quoted, " "))
		}
		b.WriteString("\t*) _files ;;\n\tesac\n}\n_kmemprof \"$@\"\n")
	default:
		return "", usagef("completion for %q: want bash or zsh", shell)
	}
	return b.String(), nil
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// manPage is kmemprof's manual page in roff: the main help, then each
// command's help, verbatim in no-fill blocks.
func manPage() string {
	var b strings.Builder
	date := time.Now().UTC().Format("2006-01-02")
	fmt.Fprintf(&b, ".TH KMEMPROF 8 %q %q \"kmemprof manual\"\n", date, "kmemprof "+version)
	b.WriteString(".SH NAME\nkmemprof \\- find kernel memory leaks by call stack\n")
	b.WriteString(".SH SYNOPSIS\n.B kmemprof\n.I command\n[\n.I options\n]\n")
	b.WriteString(".SH DESCRIPTION\n")
	_, desc, _ := strings.Cut(mainUsage, "\n\n")
	desc, _, _ = strings.Cut(desc, "\nUsage:")
	b.WriteString(roffText(strings.TrimSpace(desc)) + "\n")
	b.WriteString(".SH COMMANDS\n")
	for _, d := range commandDocs() {
		if d.usage == "" {
			continue
		}
		fmt.Fprintf(&b, ".SS %s\n%s\n.PP\n.nf\n%s\n.fi\n", roffText(d.name), roffText(d.summary), roffText(strings.TrimRight(d.usage, "\n")))
	}
	_, examples, _ := strings.Cut(mainUsage, "\nExamples:\n")
	b.WriteString(".SH EXAMPLES\n.nf\n" + roffText(strings.TrimRight(examples, "\n")) + "\n.fi\n")
	b.WriteString(".SH SEE ALSO\n.BR go (1),\n.BR perf (1),\n.BR bpftrace (8)\n")
	return b.String()
}

// roffText escapes text for roff: backslashes, and lines that would start
// with a control character.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			lines[i] = `\&` + l
		}
	}
	return strings.Join(lines, "\n")
}

func runCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprint(stdout, completionUsage)
		return exitOK
	}
	if len(args) != 1 {
		return report(stderr, "completion", usagef("want one shell: bash or zsh"))
	}
	s, err := completionScript(args[0])
	if err != nil {
		return report(stderr, "completion", err)
	}
	fmt.Fprint(stdout, s)
	return exitOK
}

func runMan(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprint(stdout, manUsage)
		return exitOK
	}
	if len(args) > 0 {
		return report(stderr, "man", usagef("takes no arguments, got %q", args[0]))
	}
	fmt.Fprint(stdout, manPage())
	return exitOK
}
